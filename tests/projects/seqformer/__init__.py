"""Tests of projects/seqformer: the SeqFormer model, matcher, mask head and converter."""
