"""ClipTokenizer: ids equal to the official HF CLIPTokenizer call (fixture + cross-checked literals)."""

from __future__ import annotations

import pytest
import torch

from seem.errors import PromptError
from seem.modeling.language.templates import TEMPLATES, clean_class_name
from seem.modeling.language.tokenizer import EOT_ID, SOT_ID, VOCAB_SIZE, ClipTokenizer, TokenizedText

from _text_fixture import case, class_names, text_config


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


# Literals checked against transformers 4.46.3 CLIPTokenizer (slow, with ftfy) built from the same BPE file;
# ids without start/end tokens.
HF_IDS = {
    "a photo of a dog.": [320, 1125, 539, 320, 1929, 269],
    "  A   Photo\tof\n a DOG. ": [320, 1125, 539, 320, 1929, 269],  # whitespace runs, strip, lower-case
    "don\u2019t stop": [847, 713, 1691],  # ftfy uncurls quotes -> "'t" contraction
    "\ufb01sh and \ufb02owers": [2759, 537, 4023],  # ftfy expands ligatures
    "\uff21\uff22\uff23\u3000full width": [5334, 1476, 23571],  # ftfy folds full-width forms
    "caf\u00c3\u00a9": [15304],  # ftfy repairs mojibake -> "café"
    "caf\u00e9": [15304],
    "a&amp;b": [320, 261, 321],  # ftfy decodes the HTML entity
    "a<|endoftext|>b": [320, 49407, 321],  # literal special token split out before cleaning
    "<|ENDOFTEXT|> up": [49407, 705],  # lower-cased, then matched by the regex and BPE cache
    "emoji \U0001f993": [16327, 6040, 497],  # 4-byte UTF-8 through the byte table
    "\u65e5\u672c\u8a9e": [39121, 44353, 34002, 508],
    "IT'S": [585, 568],
    "na\u00efve": [1097, 35689, 563],
    "zero\u200bwidth": [5848, 9844, 23571],
    "": [],
}


@pytest.mark.parametrize("text", list(HF_IDS))
def test_ids_match_hf_clip_tokenizer(tokenizer, text):
    assert tokenizer.tokenize(text) == HF_IDS[text]
    encoded = tokenizer.encode([text])
    n = len(HF_IDS[text]) + 2
    assert encoded.input_ids[0, :n].tolist() == [SOT_ID, *HF_IDS[text], EOT_ID]
    assert (encoded.input_ids[0, n:] == EOT_ID).all()
    assert encoded.attention_mask[0].tolist() == [1] * n + [0] * (77 - n)


def test_vocabulary_layout(tokenizer):
    assert tokenizer.vocab_size == VOCAB_SIZE == 49408
    assert tokenizer.tokenize("<|startoftext|>") == [SOT_ID]
    assert tokenizer.tokenize("!") == [256]  # "!</w>": first end-of-word byte symbol (256 + 0)
    assert tokenizer.decode(tokenizer.encode(["Zebra on the LEFT"]).input_ids[0, :5].tolist()) == (
        "<|startoftext|>zebra on the left"
    )


def test_fixture_class_prompt_ids(tokenizer):
    meta, tensors = case("a_generic")
    names = class_names(meta)
    texts = [t.format(clean_class_name(n)) for n in names for t in meta["prompt_templates"]]
    encoded = tokenizer.encode(texts, context_length=text_config().context_length)
    shape = tensors["text.class_input_ids"].shape
    assert torch.equal(encoded.input_ids.view(shape), tensors["text.class_input_ids"])
    assert torch.equal(encoded.attention_mask.view(shape), tensors["text.class_attention_mask"])


@pytest.mark.parametrize("name", ["b_grounding", "f_text_plus_point"])
def test_fixture_grounding_ids(tokenizer, name):
    meta, tensors = case(name)
    encoded = tokenizer.encode([meta["text"]], context_length=text_config().context_length)
    assert encoded.input_ids.dtype == torch.int64 and encoded.attention_mask.dtype == torch.int64
    assert torch.equal(encoded.input_ids, tensors["text.input_ids"])
    assert torch.equal(encoded.attention_mask, tensors["text.attention_mask"])


def test_fixture_templates_are_the_official_ones():
    meta, _ = case("a_generic")
    assert tuple(meta["prompt_templates"]) == TEMPLATES


def test_too_long_text_raises_with_count_and_limit(tokenizer):
    text = "word " * 80  # 80 tokens + sot + eot = 82
    with pytest.raises(PromptError, match=r"82 tokens.*77"):
        tokenizer.encode(["short", text])
    fits = "word " * 75  # exactly 77 with sot/eot
    assert tokenizer.encode([fits]).attention_mask.sum().item() == 77


def test_truncate_cuts_like_hf(tokenizer):
    text = " ".join(f"w{i}" for i in range(60))  # 120 tokens
    full = tokenizer.tokenize(text)
    encoded = tokenizer.encode([text], truncate=True)
    assert encoded.input_ids[0].tolist() == [SOT_ID, *full[:75], EOT_ID]
    assert encoded.attention_mask[0].sum().item() == 77
    short = tokenizer.encode([text], context_length=10, truncate=True)
    assert short.input_ids[0].tolist() == [SOT_ID, *full[:8], EOT_ID]


def test_batch_and_input_validation(tokenizer):
    encoded = tokenizer.encode(["a", "a photo of a dog."])
    assert isinstance(encoded, TokenizedText)
    assert encoded.input_ids.shape == (2, 77)
    assert encoded.lengths.tolist() == [3, 8]
    assert encoded.input_ids.argmax(-1).tolist() == [2, 7]  # first EOT: where the sentence is read
    assert tokenizer.encode([]).input_ids.shape == (0, 77)
    with pytest.raises(PromptError, match="single str"):
        tokenizer.encode("a dog")
    with pytest.raises(PromptError, match="must be a str"):
        tokenizer.encode([3])


def test_class_name_cleanup():
    assert clean_class_name("wall-other-merged") == "wall"
    assert clean_class_name("food-other-merged") == "food"
    assert clean_class_name("playingfield") == "playingfield"
    assert clean_class_name("t-shirt") == "t-shirt"  # other hyphens/underscores are kept, as officially
    assert clean_class_name("traffic_light") == "traffic_light"
    assert clean_class_name("a,b+c-stuff", training=True) == "ab c"
