"""Audio helpers shared by families and data readers: read, check, mix to mono, resample, clip."""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np

from zoo.errors import InvalidInputError, one_line

# Frames decoded at a time when checking a whole file: about 1 MiB of float32 per channel.
CHECK_BLOCK_FRAMES = 1 << 18


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


def read_audio(path: str | Path | BinaryIO, *, sample_rate: int, max_seconds: float | None = None,
               name: str | None = None) -> np.ndarray:
    """Read an audio file (wav, flac, ogg, ...) as mono float32 at ``sample_rate``, clipped to ``max_seconds``.
    ``path`` may also be a binary file object (an upload's bytes), which ``name`` names in errors.

    Only the first ``max_seconds`` are decoded.

    Raises:
        InvalidInputError: naming the file, if it cannot be decoded, has no samples, or holds NaN or infinite
            samples in the part read.
    """
    import soundfile

    name = name or str(path)
    try:
        with soundfile.SoundFile(path if hasattr(path, "read") else str(path)) as sound:
            rate = sound.samplerate
            frames = max(1, int(max_seconds * rate)) if max_seconds else -1
            data = sound.read(frames, dtype="float32", always_2d=True)
    except Exception as exc:  # LibsndfileError for corrupt files; TypeError/ValueError/RuntimeError from odd headers
        raise InvalidInputError(f"{name}: {_unreadable(exc)}") from None
    reason = samples_problem(data, rate)
    if reason:
        raise InvalidInputError(f"{name}: {reason}")
    return resample(data.mean(axis=1), rate, sample_rate)


def audio_problem(path: str | Path) -> str | None:
    """None when every sample of the file at ``path`` decodes and is finite, else why not (one line, no file name).

    The file is decoded in blocks of :data:`CHECK_BLOCK_FRAMES` frames, so memory stays bounded whatever its length.
    """
    import soundfile

    try:
        with soundfile.SoundFile(str(path)) as sound:
            if sound.frames <= 0:
                return "the audio file has no samples"
            start = 0
            for block in sound.blocks(CHECK_BLOCK_FRAMES, dtype="float32", always_2d=True):
                reason = samples_problem(block, sound.samplerate, start=start)
                if reason:
                    return reason
                start += len(block)
    except Exception as exc:  # as in read_audio: libsndfile and soundfile raise several types for bad files
        return _unreadable(exc)
    return None


def samples_problem(samples: np.ndarray, rate: int, *, start: int = 0) -> str | None:
    """None when ``samples`` (frames first) is non-empty and finite, else why not; ``start`` offsets the time named.

    Float WAV and FLAC files can store NaN and infinity, which would turn every loss and logit into NaN.
    """
    samples = np.asarray(samples)
    if samples.size == 0 and start == 0:
        return "the audio has no samples"
    finite = np.isfinite(samples)
    if finite.all():
        return None
    frame = start + int(np.argwhere(~finite)[0][0])
    return f"the audio holds NaN or infinite samples (the first at {frame / rate:.3f} s, frame {frame})"


def _unreadable(exc: Exception) -> str:
    return f"not a readable audio file ({type(exc).__name__}: {one_line(exc)})"
