"""A generator that records each input it runs and fails on one, for the tests of what a failure stops."""

from aigc.errors import BadInputError
from aigc.generators.base import Generator


def counted(bad: str) -> type[Generator]:
    """A generator class whose `ran` lists the inputs it ran, in order; the input `bad` raises a
    BadInputError, any other is answered with itself as the text."""

    class Counted(Generator):
        name = "counted"
        ran: list = []

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            self.ran.append(prepared)
            if prepared == bad:
                raise BadInputError("the model cannot answer this one")
            return prepared

        def postprocess(self, raw, opts):
            return {"text": raw}

    return Counted
