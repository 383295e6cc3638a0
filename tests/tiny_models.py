"""Tiny random-weight models of each family, written the way their Hub repos are laid out.

Each builder writes a folder that :class:`tests.hub_server.HubStore` serves under a Hub repo id, so tests load
them through huggingface_hub exactly as real backbones are loaded. They are seconds to build and train on CPU.
"""

from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

WORDS = ("good great fine love excellent happy bad awful poor hate terrible sad the a movie film was is it "
         "this very not service food slow fast ok cat dog yes no").split()


@contextlib.contextmanager
def seeded(repo_id: str, salt: int = 0) -> Iterator[None]:
    """Build with weights fixed by the repo id, so every test session trains the same tiny models.

    Random initial weights that changed per session made the learning tests pass or fail by the draw.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(repo_id.encode()) + salt)
        yield


def build_timm(arch: str) -> Callable[[Path], None]:
    def build(folder: Path) -> None:
        import timm
        from timm.models import save_for_hf

        model = timm.create_model(arch, pretrained=False)
        save_for_hf(model, str(folder), safe_serialization=True)

    return build


def build_bert(folder: Path) -> None:
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz",
             *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz"), *".,!?'"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab={token: i for i, token in enumerate(vocab)}, do_lower_case=True,
                                  model_max_length=64)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def build_distilbert(folder: Path) -> None:
    """A second text architecture (not served by the test Hub): for rankings that need two text backbones."""
    from transformers import BertTokenizerFast, DistilBertConfig, DistilBertModel

    build_bert(folder)      # the same vocabulary and tokenizer files
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    for name in ("config.json", "model.safetensors"):
        (folder / name).unlink()
    config = DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=48, n_layers=2, n_heads=2, hidden_dim=96,
                              max_position_embeddings=64)
    DistilBertModel(config).save_pretrained(folder)


def build_wav2vec2(folder: Path, *, norm: str = "layer") -> None:
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    config = Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(32, 32, 32), conv_stride=(5, 4, 4), conv_kernel=(10, 4, 4),
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=32,
                            feat_extract_norm=norm, do_stable_layer_norm=norm == "layer")
    Wav2Vec2Model(config).save_pretrained(folder)
    # As published: the layer-norm variant (wav2vec2-large-lv60) takes a mask; the group-norm variant
    # (wav2vec2-base) normalises over time, padding included, and its processor returns no mask.
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=norm == "layer",
                             do_normalize=True).save_pretrained(folder)


def build_wav2vec2_group(folder: Path) -> None:
    """wav2vec2-base's layout: padding changes every score, so a clip must never be padded against another."""
    build_wav2vec2(folder, norm="group")


def build_whisper(folder: Path) -> None:
    from transformers import WhisperConfig, WhisperFeatureExtractor, WhisperModel

    config = WhisperConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64,
                           decoder_layers=1, decoder_attention_heads=2, decoder_ffn_dim=64, num_mel_bins=80,
                           vocab_size=128, max_source_positions=1500, max_target_positions=32,
                           pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    WhisperModel(config).save_pretrained(folder)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(folder)


# Hub repo id -> builder. tests/data/fixture_registry.toml describes each as a registry entry.
TINY_REPOS: dict[str, Callable[[Path], None]] = {
    "zoo-test/test_resnet.r160_in1k": build_timm("test_resnet"),
    "zoo-test/test_vit.r160_in1k": build_timm("test_vit"),
    "zoo-test/tiny-bert": build_bert,
    "zoo-test/tiny-wav2vec2": build_wav2vec2,
    "zoo-test/tiny-wav2vec2-group": build_wav2vec2_group,
    "zoo-test/tiny-whisper": build_whisper,
}
