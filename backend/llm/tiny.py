"""Tiny chat models built offline in a second: a byte-level BPE tokenizer trained with
``tokenizers`` on a small built-in English + Chinese text, and a randomly initialised Llama.

They answer nonsense, but they load, chat-template, stream and train exactly like real models,
so every page can be tried (and every test run) with no download. Fine-tuning and pre-training
reuse :func:`build_tiny_model` and :func:`build_tokenizer`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<|im_start|>", "<|im_end|>", "<unk>"]
PAD, BOS, EOS, IM_START, IM_END, UNK = SPECIAL_TOKENS

# ChatML, with tools described in the system turn and called as <tool_call>{json}</tool_call>
# (the Hermes / Qwen convention, which backend.llm.tool_calls parses).
CHAT_TEMPLATE = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages and messages[0].role == 'system' %}{{ messages[0].content }}\n\n{% endif %}"
    "You may call these tools:\n"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}{{ '\\n' }}"
    "To call a tool, answer with <tool_call>{\"name\": ..., \"arguments\": {...}}</tool_call>"
    "<|im_end|>\n"
    "{% elif messages and messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' %}{# rendered above #}"
    "{% elif message.role == 'tool' %}"
    "<|im_start|>tool\n{{ message.content }}<|im_end|>\n"
    "{% elif message.role == 'assistant' and message.tool_calls %}"
    "<|im_start|>assistant\n{{ message.content or '' }}"
    "{% for call in message.tool_calls %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "<tool_call>{\"name\": {{ fn.name | tojson }}, \"arguments\": "
    "{{ fn.arguments | tojson if fn.arguments is mapping else fn.arguments }}}</tool_call>"
    "{% endfor %}<|im_end|>\n"
    "{% else %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

CORPUS = """\
The studio helps a team work with large language models. A prompt is a question or an \
instruction; the model answers it. A knowledge base holds documents split into chunks, and an \
agent retrieves the chunks that match a question before it answers. Fine-tuning teaches a model \
new answers from examples. Pre-training teaches a new model the language itself, one token at a \
time, from a large body of text.
Hello! How are you today? I am fine, thank you. What is the weather like? It is sunny and warm.
Please summarise this document in three sentences. Translate the following text into Chinese.
Write a short poem about the sea. The quick brown fox jumps over the lazy dog.
Tokens are pieces of words. A tokenizer turns text into tokens and tokens back into text.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000 2024 3.14 42.
Questions and answers: What is the capital of France? Paris. Who wrote Hamlet? Shakespeare.
The user asks, the assistant answers, the system sets the rules. Tools let an agent call a \
calculator, search the web or read a database, then use the result in its answer.
你好！今天过得怎么样？我很好，谢谢。今天天气怎么样？今天是晴天，很暖和。
大语言模型可以回答问题、写文章、翻译文本。知识库保存文档，文档被切分成小段，智能体先检索相关的段落，\
再回答用户的问题。微调让模型从示例中学习新的回答，预训练让新模型学习语言本身。
请用三句话总结这篇文档。请把下面的文字翻译成英文。写一首关于大海的短诗。
中国的首都是北京。上海是一个大城市。我们一起学习人工智能和机器学习。
分词器把文字变成词元，再把词元变回文字。模型一次生成一个词元。
用户提问，助手回答，系统设定规则。工具让智能体可以调用计算器、搜索网页或者读取数据库。
Once upon a time there was a little robot who lived in a library. Every morning it read a \
new book, and every evening it told the children what it had learned. One day a girl asked it \
why the sky is blue. The robot said that sunlight is made of many colours, and the air scatters \
blue light more than red light, so we see blue everywhere we look.
A good answer is short, correct and kind. If you do not know, say so, and explain how to find out.
Machine learning finds patterns in data. Training minimises a loss; validation checks that the \
model generalises; a learning rate that is too high makes training unstable, and one that is too \
low makes it slow. Checkpoints save the weights so a run can resume after an interruption.
Retrieval augmented generation combines search with generation: embed the question, find the \
nearest chunks, put them in the prompt, and cite the sources in the answer.
Monday Tuesday Wednesday Thursday Friday Saturday Sunday. January February March April May June \
July August September October November December. Spring summer autumn winter.
Red orange yellow green blue indigo violet black white grey brown pink purple.
Apple banana cherry grape lemon mango orange peach pear plum strawberry watermelon.
Doctor teacher engineer farmer writer painter singer driver pilot nurse lawyer student.
Python JavaScript database server client network protocol request response memory storage.
从前有一个小机器人住在图书馆里。每天早上它读一本新书，每天晚上它把学到的东西讲给孩子们听。有一天，\
一个女孩问它为什么天空是蓝色的。机器人说，阳光由许多颜色组成，空气散射蓝光比红光多，所以我们到处都能看到蓝色。
一个好的回答应该简短、正确、友善。如果不知道，就直接说不知道，并解释怎样才能找到答案。
机器学习从数据中发现规律。训练让损失变小，验证检查模型是否能够泛化；学习率太高会让训练不稳定，\
太低会让训练很慢。检查点保存模型的权重，这样中断之后还能继续训练。
检索增强生成把搜索和生成结合起来：先把问题向量化，找到最相近的段落，放进提示词里，再在回答中注明来源。
星期一星期二星期三星期四星期五星期六星期日。一月二月三月四月五月六月七月八月九月十月十一月十二月。春夏秋冬。
红色橙色黄色绿色蓝色紫色黑色白色灰色棕色粉色。苹果香蕉樱桃葡萄柠檬芒果橙子桃子梨西瓜草莓。
医生老师工程师农民作家画家歌手司机飞行员护士律师学生。春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
床前明月光，疑是地上霜。举头望明月，低头思故乡。白日依山尽，黄河入海流。欲穷千里目，更上一层楼。
"""


@dataclass(frozen=True)
class TinyModelConfig:
    """Shape of a tiny Llama. The defaults give ~4M parameters and generate ~200 tokens/s on
    one CPU core."""

    seed: int = 0
    vocab_size: int = 4096  # upper bound: a small corpus may yield fewer merges
    hidden_size: int = 256
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    intermediate_size: int = 688
    max_position_embeddings: int = 1024
    tie_word_embeddings: bool = True

    def validate(self) -> None:
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError("num_attention_heads must be a multiple of num_key_value_heads.")
        if self.vocab_size < 300:
            raise ValueError("vocab_size must be at least 300 (256 bytes, special tokens, merges).")


def build_tokenizer(
    out_dir: Path | None = None,
    *,
    texts: Iterable[str] | None = None,
    vocab_size: int = 4096,
    model_max_length: int = 1024,
):  # -> transformers.PreTrainedTokenizerFast (untyped: keeps transformers out of import time)
    """Train a byte-level BPE tokenizer (with the ChatML chat template) on ``texts`` (default: the
    built-in English + Chinese corpus); save it to ``out_dir`` when given."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = list(texts) if texts is not None else CORPUS.splitlines()
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=IM_END,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        additional_special_tokens=[EOS, IM_START],
    )
    fast.chat_template = CHAT_TEMPLATE
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(
    out_dir: Path,
    *,
    seed: int = 0,
    vocab_size: int = 4096,
    hidden_size: int = 256,
    num_hidden_layers: int = 4,
    num_attention_heads: int = 4,
    num_key_value_heads: int = 4,
    intermediate_size: int = 688,
    max_position_embeddings: int = 1024,
    texts: Iterable[str] | None = None,
) -> Path:
    """Build a tiny chat model (tokenizer + random Llama, HF format, safetensors) in ``out_dir``.

    Deterministic for a given seed and text. Returns ``out_dir``. Takes well under 5 s on CPU.
    """
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    cfg = TinyModelConfig(
        seed=seed, vocab_size=vocab_size, hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers, num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads, intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    cfg.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(out_dir, texts=texts, vocab_size=vocab_size,
                                model_max_length=max_position_embeddings)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=cfg.tie_word_embeddings,
        bos_token_id=ids[BOS],
        eos_token_id=ids[IM_END],
        pad_token_id=ids[PAD],
    )
    saved_rng = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(saved_rng)
    model.generation_config = GenerationConfig(
        bos_token_id=ids[BOS], eos_token_id=[ids[IM_END], ids[EOS]], pad_token_id=ids[PAD],
    )
    model.save_pretrained(str(out_dir))
    meta = {"recipe": "tiny", **asdict(cfg), "vocab_size": len(tokenizer),
            "parameters": sum(p.numel() for p in model.parameters())}
    (out_dir / "studio_tiny.json").write_text(json.dumps(meta, indent=2))
    return out_dir


def tiny_model_info(path: Path) -> dict[str, object] | None:
    """What :func:`build_tiny_model` recorded about a folder, or None if it did not build it."""
    f = Path(path) / "studio_tiny.json"
    return json.loads(f.read_text()) if f.exists() else None
