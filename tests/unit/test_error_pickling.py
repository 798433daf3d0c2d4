"""Every AigcError subclass survives a pickle round trip (process pools, joblib send errors so)."""

import inspect
import pickle

import pytest

from aigc import errors

CLASSES = sorted(
    (c for c in vars(errors).values() if inspect.isclass(c) and issubclass(c, errors.AigcError)), key=lambda c: c.__name__
)
ARGUMENTS = {errors.OptionError: ("max_tokens", "must be at least 1, got 0"), errors.ContinuationLengthError: ("label 2 takes 9000 tokens", 1, 9000)}


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_every_error_class_pickles_with_its_message_and_attributes(cls):
    error = cls(*ARGUMENTS.get(cls, (f"{cls.__name__} went wrong; do this",)))
    error.at, error.index = "input 3", 2
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is cls and copy.args == error.args and vars(copy) == vars(error)
    assert str(copy) == str(error) and str(copy).startswith("input 3: ")


def test_the_continuation_error_keeps_which_continuation_and_its_tokens():
    copy = pickle.loads(pickle.dumps(errors.ContinuationLengthError("label 2 takes 9000 tokens", 1, 9000)))
    assert (copy.continuation, copy.tokens, str(copy)) == (1, 9000, "label 2 takes 9000 tokens")
