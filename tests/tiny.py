"""Tiny tokenizers and models built inside the test process, so most tests run in seconds offline.

``tiny_tokenizer("chatml")`` mimics SmolLM2 (ChatML, ``<|im_end|>`` as eos, a default system
prompt, no tool support, no ``{% generation %}`` markers); ``tiny_tokenizer("llama3")`` mimics
Llama 3.1 (``<|begin_of_text|>`` added by the template *and* by the post-processor, like the real
one, ``<|eot_id|>`` ends a turn, content is trimmed, tools and tool calls are rendered).
Both are byte-level BPE, so any text encodes. Tokenizers are cached: never mutate one in a test.
"""

from __future__ import annotations

import functools

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

CORPUS = [
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face.",
    "Hello! How can I help you today? My printer is broken and the screen is blank.",
    "Please turn it off and on again, then check the cable. Thanks, that worked!",
    "What is the weather in Paris? It is sunny and 21 degrees. The answer is 42.",
    "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
    '{"name": "get_weather", "parameters": {"city": "Paris"}} tool call result',
    "system user assistant tool ipython Environment: Cutting Knowledge Date Today",
]

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
    "<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Llama 3.1-style: system block (with tool definitions when given), "ipython" role for tool
# results, tool calls as JSON; content trimmed. No {% generation %} markers.
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{%- if tools or system_message %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\n' }}"
    "{%- if tools %}{{- 'Environment: ipython\nTools:\n' }}"
    "{%- for t in tools %}{{- t | tojson }}{{- '\n' }}{%- endfor %}{%- endif %}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' and message.get('tool_calls') %}"
    "{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{%- for call in message['tool_calls'] %}{%- set args = call['function']['arguments'] %}"
    "{{- '{\"name\": \"' + call['function']['name'] + '\", \"parameters\": ' }}"
    "{%- if args is string %}{{- args }}{%- else %}{{- args | tojson }}{%- endif %}{{- '}' }}"
    "{%- endfor %}{{- '<|eot_id|>' }}"
    "{%- elif message['role'] == 'tool' %}"
    "{{- '<|start_header_id|>ipython<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- else %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)

SPECS = {
    "chatml": dict(
        specials=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        bos="<|im_start|>", eos="<|im_end|>", pad="<|endoftext|>", template=CHATML_TEMPLATE,
    ),
    "llama3": dict(
        specials=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                  "<|end_header_id|>", "<|eot_id|>", "<|finetune_right_pad_id|>"],
        bos="<|begin_of_text|>", eos="<|eot_id|>", pad="<|finetune_right_pad_id|>",
        template=LLAMA3_TEMPLATE,
    ),
}


@functools.lru_cache(maxsize=None)
def tiny_tokenizer(template: str = "chatml") -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (~400 tokens) with the given chat template; trained in ~10 ms."""
    spec = SPECS[template]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=spec["specials"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(CORPUS, trainer=trainer)
    if template == "llama3":
        # Like the real Llama 3 tokenizer: add_special_tokens=True prepends BOS, so a caller that
        # also lets the template write it gets two.
        bos = spec["bos"]
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=spec["bos"], eos_token=spec["eos"], pad_token=spec["pad"]
    )
    fast.chat_template = spec["template"]
    return fast


def tiny_model(
    tokenizer, *, layers: int = 2, hidden: int = 64, seed: int = 0, attn_implementation: str = "sdpa"
) -> LlamaForCausalLM:
    """A randomly initialised float32 Llama small enough for a forward pass in milliseconds."""
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=hidden * 2,
        num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    config._attn_implementation = attn_implementation
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.eval()
    return model
