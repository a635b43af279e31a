"""The web tier's bridge to the engine: a child process answers, refusals come back as 400s, torch stays out."""
import pytest

from backend.core.engine import ask_engine


def test_an_engine_question_is_answered_in_a_child_process():
    answer = ask_engine("parameter_count", architecture="resnet18", channels=1, classes=3)
    # ImageNet's ResNet-18 less two of conv1's three input channels and 997 of the 1000 classes (512 weights + a bias each)
    assert answer == {"parameters": 11_689_512 - 2 * 64 * 7 * 7 - 997 * 513}


def test_an_unknown_question_is_a_programming_error_not_a_refusal():
    with pytest.raises(RuntimeError, match="no engine question 'no_such_question'"):
        ask_engine("no_such_question")
