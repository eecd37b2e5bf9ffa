"""Tokenizers and token files for pre-training.

A corpus version is tokenised once per tokenizer into two flat memory-mapped files of token ids
(``train.bin``, ``val.bin``; uint16 when the vocabulary fits, else uint32), with the end-of-text
token between documents, as in nanoGPT's ``prepare.py``. Later runs with the same tokenizer
reuse them. Batches are random windows of ``block_size + 1`` tokens (packed sequences).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from backend.training.corpus import iter_texts

TOKENIZER_FILE = "tokenizer.json"


def tokenizer_key(tokenizer_dir: Path) -> str:
    """Identifies a tokenizer by the content of its tokenizer.json (or its whole folder)."""
    f = tokenizer_dir / TOKENIZER_FILE
    h = hashlib.sha1()
    if f.exists():
        h.update(f.read_bytes())
    else:
        for p in sorted(tokenizer_dir.glob("*token*")):
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:12]


def train_bpe_tokenizer(corpus_dir: Path, vocab_size: int, *, block_size: int = 1024) -> Path:
    """A byte-level BPE tokenizer (with the ChatML chat template, so the model can chat) trained
    on the corpus's training documents. Trained once per corpus version and vocabulary size."""
    from backend.llm.tiny import build_tokenizer

    if not 300 <= vocab_size <= 200_000:
        raise ValueError("The vocabulary size must be between 300 and 200000 (e.g. 8000).")
    out = corpus_dir / "tokenizers" / f"bpe-{vocab_size}"
    if (out / TOKENIZER_FILE).exists():
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    build_tokenizer(tmp, texts=iter_texts(corpus_dir / "train.jsonl"), vocab_size=vocab_size,
                    model_max_length=block_size)
    tmp.replace(out)
    return out


def load_tokenizer(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tokenizer_dir))


def end_of_text_id(tok: Any) -> int:
    """The token put between documents: ``</s>`` when the tokenizer has it, else its EOS."""
    tid = tok.convert_tokens_to_ids("</s>")
    if isinstance(tid, int) and tid != tok.unk_token_id and tid is not None:
        return tid
    for candidate in (tok.eos_token_id, tok.sep_token_id, tok.pad_token_id):
        if candidate is not None:
            return int(candidate)
    return 0


@dataclass
class TokenFiles:
    train: Path
    val: Path
    dtype: str
    train_tokens: int
    val_tokens: int

    def to_dict(self) -> dict[str, Any]:
        return {"train": str(self.train), "val": str(self.val), "dtype": self.dtype,
                "train_tokens": self.train_tokens, "val_tokens": self.val_tokens}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TokenFiles:
        return cls(Path(d["train"]), Path(d["val"]), d["dtype"], int(d["train_tokens"]),
                   int(d["val_tokens"]))


def _encode_file(jsonl: Path, out: Path, tok: Any, dtype: np.dtype, eot: int) -> int:
    tmp = out.with_name(out.name + ".tmp")
    total = 0
    batch: list[str] = []
    with tmp.open("wb") as f:
        def flush() -> int:
            ids = tok(batch, add_special_tokens=False)["input_ids"]
            arr = np.fromiter((t for doc in ids for t in (*doc, eot)), dtype=dtype)
            arr.tofile(f)
            batch.clear()
            return int(arr.size)

        for text in iter_texts(jsonl):
            batch.append(text)
            if len(batch) >= 256:
                total += flush()
        if batch:
            total += flush()
    tmp.replace(out)
    return total


def prepare_token_files(corpus_dir: Path, tokenizer_dir: Path) -> TokenFiles:
    """Tokenise the corpus version with this tokenizer, or reuse the files made before."""
    key = tokenizer_key(tokenizer_dir)
    folder = corpus_dir / "tokens" / key
    meta = folder / "meta.json"
    if meta.exists():
        return TokenFiles.from_dict(json.loads(meta.read_text()))
    tok = load_tokenizer(tokenizer_dir)
    tok.model_max_length = 1 << 62  # whole documents are encoded; windows are cut later
    dtype = np.dtype(np.uint16) if len(tok) < 65535 else np.dtype(np.uint32)
    eot = end_of_text_id(tok)
    folder.mkdir(parents=True, exist_ok=True)
    n_train = _encode_file(corpus_dir / "train.jsonl", folder / "train.bin", tok, dtype, eot)
    n_val = _encode_file(corpus_dir / "val.jsonl", folder / "val.bin", tok, dtype, eot)
    files = TokenFiles(folder / "train.bin", folder / "val.bin", dtype.name, n_train, n_val)
    meta.write_text(json.dumps({**files.to_dict(), "tokenizer": str(tokenizer_dir),
                                "vocab_size": len(tok), "end_of_text": eot}, indent=2))
    return files


def token_memmap(path: Path, dtype: str) -> np.memmap:
    return np.memmap(path, dtype=np.dtype(dtype), mode="r")


# --- how a tokenizer splits text ---------------------------------------------------------------

@dataclass
class Split:
    name: str
    vocab_size: int
    pieces: list[str]  # the sample as the tokenizer splits it, one string per token
    chars_per_token: float  # on the sample of the corpus

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "vocab_size": self.vocab_size, "pieces": self.pieces,
                "chars_per_token": self.chars_per_token}


def split_sample(name: str, tok: Any, sample: str, texts: list[str]) -> Split:
    """How ``tok`` splits ``sample``, and its compression (characters per token) on ``texts``."""
    ids = tok(sample, add_special_tokens=False)["input_ids"]
    pieces = [tok.decode([i]) for i in ids]
    chars = sum(len(t) for t in texts)
    tokens = sum(len(x) for x in tok(texts, add_special_tokens=False)["input_ids"]) if texts else 0
    return Split(name=name, vocab_size=len(tok), pieces=pieces,
                 chars_per_token=round(chars / max(tokens, 1), 3))
