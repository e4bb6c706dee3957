"""What every tiny family shares: the training corpus, chat templates, the tokenizers and the LLaVA processor.

The tokenizers are byte-level BPEs trained in-process on a few paragraphs of English (:data:`_CORPUS`), so
every string encodes and nothing is downloaded.
"""

from __future__ import annotations

#: Weight init std of the tiny models. Larger than the usual 0.02 so that a 2-layer random model has
#: peaked (not near-uniform) next-token distributions that a 4-vector soft prompt can visibly steer.
INIT_RANGE = 0.2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # CLIP's pixel normalisation (LLaVA, LLaVA-NeXT)
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
#: The tiny language model's sizes, shared by every family.
TINY_TEXT = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 2048,
}
_CORPUS = """
The quick brown fox jumps over the lazy dog. A picture shows a red square on a white background.
How do I bake bread at home? Mix flour, water, salt and yeast, knead the dough, let it rise and bake it.
I cannot help with that request because it could cause harm. I'm sorry, but I can't assist with this.
Sure, here is a step by step guide. First, gather the materials. Second, follow the instructions carefully.
Refuse if partial output is unsafe; else, continue helpfully. What is shown in this image?
The weather today is sunny with a light breeze. Photosynthesis converts light into chemical energy.
Write a poem about the sea. Explain how vaccines work. Describe the history of the printing press.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000. Punctuation: , . ; : ! ? ' " ( ) [ ] { } - _ / \\ @ # $ % & *
"""

LLAVA_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% if message['content'] is string %}{{ message['content'] + ' ' }}{% else %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for content in message['content'] | selectattr('type', 'equalto', 'text') %}{{ content['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)

QWEN2_VL_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

GEMMA3_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "<start_of_turn>{{ role }}\n"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' %}<start_of_image>"
    "{% elif content['type'] == 'text' %}{{ content['text'] | trim }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
    "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def train_tokenizer(special_tokens: list[str], vocab_size: int = 600, add_bos: str | None = None, **token_attrs):
    """Train a byte-level BPE on the built-in corpus and wrap it as a fast tokenizer.

    Byte-level means every string can be encoded; the special tokens get the first ids.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    if add_bos is not None:  # Llama-style: the tokenizer itself prepends BOS
        from tokenizers import processors

        bos_id = tok.token_to_id(add_bos)
        tok.post_processor = processors.TemplateProcessing(
            single=f"{add_bos} $A", pair=f"{add_bos} $A {add_bos} $B", special_tokens=[(add_bos, bos_id)]
        )
    return PreTrainedTokenizerFast(tokenizer_object=tok, **token_attrs)


def llama_style_tokenizer():
    """A Llama-style tokenizer (``<s>`` prepended, ``</s>`` EOS, ``<image>`` placeholder), left padding."""
    tokenizer = train_tokenizer(
        ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
        add_bos="<s>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
    )
    tokenizer.padding_side = "left"
    return tokenizer


def llava_processor(tokenizer, image_size: int, chat_template: str):
    """A real ``LlavaProcessor``: PIL CLIP image processing at ``image_size`` px, patch 14, CLS dropped."""
    from transformers import LlavaProcessor
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
    )
    return LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=14,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
        num_additional_image_tokens=1,
    )


def _padded_vocab(tokenizer, multiple: int = 64) -> int:
    n = len(tokenizer)
    return ((n + multiple - 1) // multiple) * multiple


def llama_text_config(tokenizer, text: dict, vocab_size: int | None = None, init_range: float = INIT_RANGE):
    """The language model of a tiny twin: a ``LlamaConfig`` of the ``text`` sizes, the tokenizer's special ids and
    a vocabulary padded to a multiple of 64 (unless ``vocab_size`` is given)."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size or _padded_vocab(tokenizer),
        **text,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        initializer_range=init_range,
    )
