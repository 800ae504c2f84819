"""The seed's experiment (bge-large-zh, five sentences): is [CLS] the pooler? How are they related?"""

import pytest

from pytest_bertprobe import assert_cls_differs_from_pooler, assert_pooler_is_dense_tanh_of_cls


def test_cls_is_not_the_pooler_but_its_dense_tanh(bert_model, bert_tokenizer, bert_anatomy):
    if not bert_anatomy.checkable:  # DistilBERT, ELECTRA, ModernBERT, ...: no pooler to ask about
        pytest.skip(bert_anatomy.reason)
    sentences = ["开心", "快乐", "难过", "天气", "今天会有大大的台风吗?"]
    encoded_input = bert_tokenizer(sentences, padding=True, truncation=True, return_tensors="pt", max_length=200)

    # Q1: is the [CLS] value the pooler value?  No: they differ.
    assert_cls_differs_from_pooler(bert_model, encoded_input, sentences=sentences)
    # Q2: how is the pooler related to the hidden states?  pooler_output == tanh(dense(last_hidden_state[:, 0])).
    assert_pooler_is_dense_tanh_of_cls(bert_model, encoded_input, sentences=sentences)
