"""Audio helpers shared by families and data readers: read, mix to mono, resample, clip."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo.errors import InvalidInputError


def resample(waveform: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """Resample a 1-D signal with the Fourier method (an ideal low-pass, so no aliasing when downsampling)."""
    if orig_rate == target_rate or waveform.size == 0:
        return waveform.astype(np.float32, copy=False)
    n_out = max(1, int(round(waveform.shape[-1] * target_rate / orig_rate)))
    spectrum = np.fft.rfft(waveform.astype(np.float64))
    keep = min(spectrum.shape[-1], n_out // 2 + 1)
    resized = np.zeros(n_out // 2 + 1, dtype=np.complex128)
    resized[:keep] = spectrum[:keep]
    return (np.fft.irfft(resized, n=n_out) * (n_out / waveform.shape[-1])).astype(np.float32)


def read_audio(path: str | Path, *, sample_rate: int, max_seconds: float | None = None) -> np.ndarray:
    """Read an audio file (wav, flac, ogg, ...) as mono float32 at ``sample_rate``, clipped to ``max_seconds``.

    Raises:
        InvalidInputError: naming the file, if it cannot be decoded.
    """
    import soundfile

    try:
        data, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, soundfile.LibsndfileError) as exc:
        raise InvalidInputError(f"{path}: not a readable audio file ({exc})") from None
    mono = data.mean(axis=1)
    if max_seconds:
        mono = mono[: int(max_seconds * rate)]
    return resample(mono, rate, sample_rate)
