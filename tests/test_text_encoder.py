"""TextEncoder: parity with the official language encoder on both golden fixtures (``text_kind``), plus behaviour
tests."""

from __future__ import annotations

import pytest
import torch

from seem.configs import TextConfig
from seem.modeling.language.text_encoder import TextEmbeddings, TextEncoder
from seem.modeling.language.tokenizer import ClipTokenizer

from _fixture import KINDS
from _text_fixture import OFFICIAL_PREFIX, case, class_names, require_fixture, text_config, text_state_dict

ATOL = 1e-4  # parity tolerance (observed ~1e-6 or better); do not loosen


@pytest.fixture(scope="module", params=KINDS)
def text_kind(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def encoder(text_kind) -> TextEncoder:
    require_fixture(text_kind)
    model = TextEncoder(text_config(text_kind)).eval()
    model.load_state_dict(text_state_dict(text_kind), strict=True)
    return model


@pytest.fixture(scope="module")
def tokenizer() -> ClipTokenizer:
    return ClipTokenizer()


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a.float() - b.float()).abs().max().item()


def test_parameter_names_are_the_official_ones(text_kind):
    require_fixture(text_kind)
    official = text_state_dict(text_kind)  # already renamed; strict load below proves the mapping is complete
    ours = TextEncoder(text_config(text_kind)).state_dict()
    assert set(ours) == set(official)
    assert all(ours[k].shape == official[k].shape for k in ours)
    assert any(k.startswith("transformer.resblocks.0.attn.in_proj_weight") for k in ours)
    assert OFFICIAL_PREFIX == "sem_seg_head.predictor.lang_encoder."


def test_logit_scale(encoder, text_kind):
    _, tensors = case("a_generic", text_kind)
    assert _max_diff(encoder.logit_scale.detach(), tensors["logit_scale"]) == 0.0


@pytest.mark.parametrize("name", ["b_grounding", "f_text_plus_point"])
def test_token_and_sentence_embeddings(encoder, text_kind, name):
    _, tensors = case(name, text_kind)
    with torch.no_grad():
        out = encoder(tensors["text.input_ids"], tensors["text.attention_mask"])
    assert isinstance(out, TextEmbeddings)
    assert _max_diff(out.token_embeddings, tensors["text.token_emb"]) < ATOL
    assert _max_diff(out.sentence_embeddings, tensors["text.class_emb"]) < ATOL
    # The grounding prompt tokens handed to the decoder are the unmasked token embeddings.
    tokens = out.token_embeddings[out.attention_mask][:, None]
    assert _max_diff(tokens, tensors["decoder_input.grounding_tokens"]) < ATOL


def test_vocabulary_embeddings(encoder, tokenizer, text_kind):
    meta, tensors = case("a_generic", text_kind)
    emb = encoder.embed_vocabulary(class_names(meta), tokenizer, templates=meta["prompt_templates"])
    assert emb.dtype == torch.float32 and not emb.requires_grad
    assert _max_diff(emb, tensors["text.class_embeddings"]) < ATOL
    assert torch.allclose(emb.norm(dim=-1), torch.ones(len(emb)), atol=1e-6)
    # default templates and tiny batches give the same result
    small = encoder.embed_vocabulary(class_names(meta), tokenizer, batch_size=7)
    assert _max_diff(small, emb) < 1e-6


def test_vocabulary_applies_official_name_cleanup(encoder, tokenizer, text_kind):
    plain = encoder.embed_vocabulary(["wall"], tokenizer, templates=["a photo of a {}."])
    coco = encoder.embed_vocabulary(["wall-other-merged"], tokenizer, templates=["a photo of a {}."])
    assert torch.equal(plain, coco)
    assert encoder.embed_vocabulary([], tokenizer).shape == (0, text_config(text_kind).dim_proj)


@pytest.mark.parametrize("name", ["a_generic", "b_grounding", "f_text_plus_point"])
def test_class_logits(encoder, text_kind, name):
    _, text = case("a_generic", text_kind)  # the default vocabulary of every case
    _, tensors = case(name, text_kind)
    layers = sorted({k.split(".")[1] for k in tensors if k.endswith(".class_logits")})
    assert layers
    with torch.no_grad():
        for layer in layers:
            logits = encoder.class_logits(tensors[f"decoder.{layer}.class_embed"], text["text.class_embeddings"])
            assert _max_diff(logits, tensors[f"decoder.{layer}.class_logits"]) < ATOL


def test_grounding_similarity(encoder, text_kind):
    _, tensors = case("b_grounding", text_kind)
    with torch.no_grad():
        prob = encoder.grounding_similarity(tensors["output.pred_gtexts"][0], tensors["text.class_emb"])
    assert _max_diff(prob, tensors["post.out_prob"]) < ATOL
    assert torch.equal(prob.argmax(dim=0), tensors["post.matched_id"])


def test_grounding_similarity_clamps_scale(encoder, text_kind):
    q = torch.randn(4, text_config(text_kind).dim_proj)
    with torch.no_grad():
        low = encoder.grounding_similarity(q, q[:1], max_scale=2.0)
    assert low.max().item() == pytest.approx(2.0, abs=1e-5)  # cos(q0, q0) = 1 times the clamped scale


def test_trimmed_length_is_equivalent(encoder, tokenizer):
    texts = ["zebra", "a photo of the hard to see zebra on the left.", "sky"]
    tokens = tokenizer.encode(texts)
    with torch.no_grad():
        full = encoder(tokens.input_ids, tokens.attention_mask)
        trimmed = encoder(tokens.input_ids, tokens.attention_mask, trim=True)
        alone = encoder(tokens.input_ids[:1], trim=True)  # 3 columns only
    length = int(tokens.lengths.max())
    assert trimmed.token_embeddings.shape[1] == length and trimmed.attention_mask.shape[1] == length
    assert alone.token_embeddings.shape[1] == 3
    # Causal: positions <= EOT never see later columns (equal up to GEMM rounding for another row count).
    mask = trimmed.attention_mask
    assert torch.equal(mask, tokens.attention_mask[:, :length].bool())
    assert _max_diff(trimmed.token_embeddings[mask], full.token_embeddings[:, :length][mask]) < 1e-6
    assert _max_diff(trimmed.sentence_embeddings, full.sentence_embeddings) < 1e-6
    assert _max_diff(alone.sentence_embeddings, full.sentence_embeddings[:1]) < 1e-6
    assert _max_diff(alone.token_embeddings, full.token_embeddings[:1, :3]) < 1e-6


def test_random_model_shapes_and_noncausal_mask():
    torch.manual_seed(0)
    config = TextConfig(width=32, layers=2, heads=4, dim_proj=16, causal=False)
    model = TextEncoder(config).eval()
    tokenizer = ClipTokenizer()
    tokens = tokenizer.encode(["a red car", "two dogs playing in the snow"])
    with torch.no_grad():
        full = model(tokens.input_ids, tokens.attention_mask)
        trimmed = model(tokens.input_ids, tokens.attention_mask, trim=True)
    assert full.token_embeddings.shape == (2, 77, 16) and full.sentence_embeddings.shape == (2, 16)
    mask = trimmed.attention_mask
    # Non-causal: the key-padding mask hides padding, so trimming changes nothing on real tokens.
    length = mask.shape[1]
    assert _max_diff(trimmed.token_embeddings[mask], full.token_embeddings[:, :length][mask]) < 1e-6
    with pytest.raises(ValueError, match="attention_mask"):
        model(tokens.input_ids, trim=True)
    with pytest.raises(ValueError, match="L <= 77"):
        model(torch.zeros(1, 78, dtype=torch.int64))


def test_embeddings_follow_parameter_dtype(encoder, tokenizer, text_kind):
    model = TextEncoder(text_config(text_kind)).eval()
    model.load_state_dict(encoder.state_dict())
    model = model.to(torch.bfloat16)
    tokens = tokenizer.encode(["zebra on the left"])
    with torch.no_grad():
        out = model(tokens.input_ids, tokens.attention_mask, trim=True)
        ref = encoder(tokens.input_ids, tokens.attention_mask, trim=True)
    assert out.token_embeddings.dtype == torch.bfloat16
    cos = torch.nn.functional.cosine_similarity(out.sentence_embeddings.float(), ref.sentence_embeddings)
    assert cos.min().item() > 0.99
    emb = model.embed_vocabulary(["zebra"], tokenizer, templates=["a photo of a {}."])
    assert emb.dtype == torch.float32


def test_vocabulary_with_noncausal_config():
    torch.manual_seed(0)
    model = TextEncoder(TextConfig(width=32, layers=1, heads=2, dim_proj=8, causal=False)).eval()
    emb = model.embed_vocabulary(["cat", "traffic light"], ClipTokenizer(), templates=["{}.", "a photo of a {}."])
    assert emb.shape == (2, 8) and torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-6)


def test_trim_keeps_tokens_after_a_literal_eot(encoder, tokenizer):
    # HF (and so the official code) maps a literal "<|endoftext|>" in the text to 49407 and keeps the
    # mask on the whole text; the sentence is read at that first EOT, the tokens after it stay.
    tokens = tokenizer.encode(["zebra<|endoftext|> on the left"])
    assert tokens.input_ids[0, :7].tolist() == [49406, 22548, 49407, 525, 518, 1823, 49407]
    with torch.no_grad():
        full = encoder(tokens.input_ids, tokens.attention_mask)
        trimmed = encoder(tokens.input_ids, tokens.attention_mask, trim=True)
    assert trimmed.token_embeddings.shape[1] == 7
    assert _max_diff(trimmed.token_embeddings[trimmed.attention_mask], full.token_embeddings[full.attention_mask]) < 1e-6
    assert _max_diff(trimmed.sentence_embeddings, full.token_embeddings[:, 2]) < 1e-6
