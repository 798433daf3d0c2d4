import dataclasses
import re
import unicodedata
import warnings

import pytest

import aigc
from aigc.engine.sampling import SamplingParams
from aigc.errors import AigcError, AigcNote, AigcWarning, AnswerJSONError, BadInputError, ContextLengthError, OptionError, UnknownGeneratorError
from aigc.generators.chat import ChatGenerator, ChatSession
from aigc.generators.classify import ClassifyGenerator
from aigc.generators.headline import MAX_ROUNDS, HeadlineGenerator, clean_headline, fit_headline
from aigc.generators.summarize import SummarizeGenerator, split_by_tokens
from aigc.generators.translate import TranslateGenerator

LONG_TEXT = "Some text about bees. " * 60  # longer than any summary length, so the model is asked


def test_a_text_no_longer_than_its_summary_is_given_back_without_the_model():
    from aigc import templates

    engine = FakeEngine()
    with pytest.warns(AigcWarning, match=r"^the text \(4 words\) is no longer than the summary asked for, so it is given back as it is$"):
        result = SummarizeGenerator(engine=engine)("Hi.  How are\nyou?", words=5)
    assert result == {"summary": "Hi.  How are\nyou?", "words": 4, "map_reduce_rounds": 0, "parts": 1, "cut_off": False, "unchanged": True}
    with pytest.warns(AigcWarning, match=r"^the text \(4 words\) is no longer"):
        assert SummarizeGenerator(engine=engine)("Hi. How are you?", format="bullets")["summary"] == "- Hi.\n- How are you?"
    assert engine.calls == []
    engine.enqueue("Bees.")
    assert SummarizeGenerator(engine=engine)("Bees buzz. " * 10, words=5)["unchanged"] is False and len(engine.calls) == 1
    engine.enqueue("Mine.")
    (templates.user_dir()).mkdir(parents=True, exist_ok=True)
    (templates.user_dir() / "summarize.j2").write_text("Shorten: {{ text }}")  # a template of your own always runs
    with pytest.warns(AigcWarning, match=r"never reads \{\{ words \}\}"):  # nor does it ask for 5 words
        assert SummarizeGenerator(engine=engine)("Hi.", words=5)["summary"] == "Mine." and len(engine.calls) == 2
from aigc.testing import FakeEngine
from counted import counted


def words(text):
    return len(text.split())


def test_split_respects_the_budget_and_keeps_all_text():
    paragraph = " ".join(f"Sentence number {i} is here." for i in range(40))
    text = "\n\n".join([paragraph, "Short one.", "x " * 500])
    chunks = split_by_tokens(text, 60, words)
    assert all(words(c) <= 60 for c in chunks)
    assert " ".join(" ".join(chunks).split()) == " ".join(text.split())


@pytest.mark.parametrize(
    "text",
    [
        "ภาษาไทยเป็นภาษาที่มีความซับซ้อน" * 40,  # Thai: no spaces between words, and marks that combine with the letter before
        "An image: data:image/png;base64," + "iVBORw0KGgo" * 120 + " ends here.",  # one word longer than a chunk
        "Some words. " * 30 + "A long run of words " * 10 + "data:image/png;base64," + "iVBORw0KGgo" * 120 + " in it.",
    ],
)
def test_split_cuts_text_with_no_place_to_cut_between_characters_within_the_budget(text):
    def characters(text):  # a token per character, the blank line between a chunk's parts one too
        return len(text.replace("\n\n", "\n"))

    chunks = split_by_tokens(text, 64, characters)
    assert all(characters(c) <= 64 for c in chunks) and not any(unicodedata.category(c[0]).startswith("M") for c in chunks)
    assert "".join("".join(chunks).split()) == "".join(text.split())


def test_a_text_in_a_script_without_spaces_between_words_is_summarized_when_its_tokens_outnumber_a_summarys():
    class CountsCharacters(FakeEngine):
        def count_tokens(self, prompt):
            return len(prompt) if isinstance(prompt, str) else super().count_tokens(prompt)

    engine = CountsCharacters()
    engine.enqueue("ภาษาไทย")
    result = SummarizeGenerator(engine=engine)("ภาษาไทยเป็นภาษาที่มีความซับซ้อน" * 20, length="short")  # 1 word as count_words counts it; 620 tokens
    assert result["unchanged"] is False and result["summary"] == "ภาษาไทย" and len(engine.calls) == 1


def test_long_documents_are_summarized_map_reduce_with_progress():
    engine = FakeEngine()
    engine.enqueue(*[f"part {i} summary." for i in range(10)], "Final summary line one.\nline two")
    seen = []
    gen = SummarizeGenerator(engine=engine, progress=lambda done, total, what: seen.append((done, total)))
    result = gen("\n\n".join(f"Paragraph {i}. " + "word " * 90 for i in range(10)), chunk_tokens=100, batch_size=3)
    assert result["map_reduce_rounds"] == 1
    assert result["summary"] == "Final summary line one. line two"
    assert len(engine.calls) == 5  # 10 chunks in batches of 3, then the final summary
    assert (10, 10) in seen


def test_the_default_part_size_is_fitted_to_the_context_and_the_answer():
    engine = FakeEngine(context_length=400)
    engine.enqueue(*["Bees make honey."] * 20)
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 90 for i in range(6))
    result = SummarizeGenerator(engine=engine)(text)
    assert result["summary"] == "Bees make honey." and result["map_reduce_rounds"] == 1
    assert all(engine.count_tokens(prompt) + params.max_tokens <= 400 for prompts, params in engine.calls for prompt in prompts)


def test_a_fitted_part_size_holds_parts_that_count_more_than_their_pieces():
    class JoinsCountMore(FakeEngine):  # a paragraph break is 4 tokens, not the 1 split_by_tokens allows it
        def count_tokens(self, prompt):
            if isinstance(prompt, str):
                return len(prompt.split()) + 3 * prompt.count("\n\n")
            return sum(self.count_tokens(m["content"]) + 4 for m in prompt)

    engine = JoinsCountMore(context_length=400)
    engine.enqueue(*["Bees make honey."] * 40)
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 8 for i in range(60))
    assert SummarizeGenerator(engine=engine)(text)["summary"] == "Bees make honey."


def _fix(message: str, name: str) -> int:
    """The value an error says `name` should be lowered to."""
    return int(re.search(rf"{name} to (\d+) or less", message).group(1))


def test_a_part_too_long_for_the_context_with_its_answer_names_the_part_size_that_fits():
    engine = FakeEngine(context_length=400)
    gen = SummarizeGenerator(engine=engine)
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 90 for i in range(4))
    with pytest.raises(ContextLengthError, match=r"^the prompt takes \d+ tokens and 200 more were asked for, but fake holds 400; lower chunk_tokens to \d+ or less \(now 300\), or max_tokens to \d+ or less \(now 200\)$") as part:
        gen(text, chunk_tokens=300, sampling={"max_tokens": 200})
    with pytest.raises(ContextLengthError, match=r"^the prompt takes \d+ tokens, but fake holds 400 with the answer; lower chunk_tokens to \d+ or less \(now 2000\)$") as alone:
        gen(text + "\n\nOne more paragraph. " + "word " * 60, chunk_tokens=2000)  # the whole text is one part, longer than the context on its own
    assert engine.calls == []  # refused before the model is asked
    engine.enqueue(*["Bees make honey."] * 40)
    assert gen(text, chunk_tokens=_fix(str(part.value), "chunk_tokens"), sampling={"max_tokens": 200})["summary"] == "Bees make honey."  # the one change it names is enough
    assert gen(text, chunk_tokens=_fix(str(alone.value), "chunk_tokens"))["summary"] == "Bees make honey."


def test_an_answer_that_leaves_no_room_for_a_part_names_every_setting_to_lower():
    engine = FakeEngine(context_length=400)
    gen = SummarizeGenerator(engine=engine)
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 90 for i in range(4))
    with pytest.raises(ContextLengthError, match=r"; lower max_tokens to \d+ or less \(now 350\)$") as fitted:
        gen(text, sampling={"max_tokens": 350})
    with pytest.raises(ContextLengthError, match=r"; lower max_tokens to \d+ or less \(now 350\) and chunk_tokens to 64 \(now 300\)$"):
        gen(text, chunk_tokens=300, sampling={"max_tokens": 350})
    assert engine.calls == []
    engine.enqueue(*["Bees make honey."] * 40)
    assert gen(text, sampling={"max_tokens": _fix(str(fitted.value), "max_tokens")})["summary"] == "Bees make honey."


def test_bullets_format_from_prose():
    engine = FakeEngine()
    engine.enqueue("Here is a summary: Bees thrive in cities. Some ecologists worry.")
    result = SummarizeGenerator(engine=engine)(LONG_TEXT, format="bullets")
    assert result["summary"] == "- Bees thrive in cities.\n- Some ecologists worry."


def test_a_bullet_longer_than_the_summary_is_split_into_sentences_and_cut_to_length():
    engine = FakeEngine()
    long_point = " ".join(f"Sentence {i} says a few more words about bees." for i in range(10))
    engine.enqueue(f"- {long_point}\n- Short point.")
    result = SummarizeGenerator(engine=engine)(LONG_TEXT, format="bullets", length="short")
    points = result["summary"].splitlines()
    assert points[0] == "- Sentence 0 says a few more words about bees." and 1 < len(points) < 10
    assert result["words"] <= 40 * 1.3


def test_a_quote_opened_and_never_closed_is_dropped():
    engine = FakeEngine()
    engine.enqueue('"Bees thrive in cities.', '"Bees" thrive in cities.')
    generator = SummarizeGenerator(engine=engine)
    assert [generator(LONG_TEXT)["summary"] for _ in range(2)] == ["Bees thrive in cities.", '"Bees" thrive in cities.']


@pytest.mark.parametrize(
    "answer, format_, expected",
    [
        ("Here's a revised version of the summary condensed into two paragraphs:\n\n- Bees thrive.\n- Some worry.", "bullets", "- Bees thrive.\n- Some worry."),
        ("Sure! Here is what the article says:\nBees thrive. Some worry.", "paragraph", "Bees thrive. Some worry."),
        ("The report makes two recommendations:\n- Fund bees.\n- Plant flowers.", "bullets", "- The report makes two recommendations:\n- Fund bees.\n- Plant flowers."),
        ("Revenue by region:\nEurope grew 5%.", "paragraph", "Revenue by region: Europe grew 5%."),
    ],
)
def test_only_an_introducing_first_line_is_dropped(answer, format_, expected):
    engine = FakeEngine()
    engine.enqueue(answer)
    assert SummarizeGenerator(engine=engine)(LONG_TEXT, format=format_)["summary"] == expected


@pytest.mark.parametrize("options, words_", [({"length": "huge"}, "^length must"), ({"format": "table"}, "^format must"), ({"words": 1}, "^words must"), ({"colour": 1}, "colour: summarize has no such option")])
def test_summarize_rejects_bad_options(options, words_):
    with pytest.raises(BadInputError, match=words_):
        SummarizeGenerator(engine=FakeEngine())("text", **options)


@pytest.mark.parametrize(
    "generator, options, message",
    [
        (SummarizeGenerator, {"words": "abc"}, "^words must be a whole number, got 'abc'$"),
        (SummarizeGenerator, {"words": 2.5}, "must be a whole number"),
        (SummarizeGenerator, {"format": 3}, "^format must be text"),
        (HeadlineGenerator, {"n": True}, "^n must be a number"),
        (ClassifyGenerator, {"labels": "a,b", "threshold": "high"}, "^threshold must be a number"),
        (ClassifyGenerator, {"labels": "a,b", "multi_label": "maybe"}, "must be true or false"),
        (ClassifyGenerator, {"labels": [1, 2]}, "labels must be names"),
    ],
)
def test_option_values_of_the_wrong_type_are_bad_input(generator, options, message):
    with pytest.raises(BadInputError, match=message):
        generator(engine=FakeEngine()).validate(options)


def test_option_values_from_text_take_the_declared_type():
    opts = ClassifyGenerator(engine=FakeEngine()).validate({"labels": "a,b", "threshold": "0.7", "multi_label": "yes"})
    assert opts.threshold == 0.7 and opts.multi_label is True
    assert SummarizeGenerator(engine=FakeEngine()).validate({"words": "40"}).words == 40
    for spelt in (" 40 ", "40.0", "4e1"):  # as sampling settings read numbers (sampling.number)
        assert SummarizeGenerator(engine=FakeEngine()).validate({"words": spelt}).words == 40
    with pytest.raises(BadInputError, match=r"^words must be a whole number, got '40.5'$"):
        SummarizeGenerator(engine=FakeEngine()).validate({"words": "40.5"})


@pytest.mark.parametrize(
    "raw, clean",
    [
        ('1. "Bees Return to the City"', "Bees Return to the City"),
        ("Headline: Bees are back.", "Bees are back"),
        ('A great headline would be "Rooftop Hives Change Urban Farming". It is good.', "Rooftop Hives Change Urban Farming"),
        ("### **Bees** on roofs #Beekeeping 🐝", "Bees on roofs"),
        ("A Good Headline:", ""),
        ("What does the headline say?", ""),
        ("Will bees save cities?", "Will bees save cities?"),
        (":A Stunning Evolution in Urban Farming", "A Stunning Evolution in Urban Farming"),
        ("— Bees, back", "Bees, back"),
        ("भारत में बारिश का मौसम शुरू", "भारत में बारिश का मौसम शुरू"),  # vowel signs and marks that combine with the letter before
        ("ข่าวเศรษฐกิจไทยวันนี้", "ข่าวเศรษฐกิจไทยวันนี้"),
        ("भारत में बारिश #मौसम_शुरू #भारत", "भारत में बारिश"),  # a hashtag goes whole, its vowel signs too
        ("Bees are back❤\ufe0f in town", "Bees are back in town"),  # an emoji's variation selector (a mark too) goes with it
        ("**1. Honeybees Are Back in the City**", "Honeybees Are Back in the City"),  # numbering inside bold markup
        ("## 2) Honeybees Are Back", "Honeybees Are Back"),
        ("1.5 Million Bees Move Downtown", "1.5 Million Bees Move Downtown"),  # a number, not numbering
        # punctuation of any script stays, symbols go
        ("城市养蜂：《蜜蜂的秘密》告诉你的五件事，还有更多！", "城市养蜂：《蜜蜂的秘密》告诉你的五件事，还有更多！"),
        ("「東京の桜」、今年は早い？🌸", "「東京の桜」、今年は早い？"),
        ("东京的樱花今年开得早。", "东京的樱花今年开得早"),
        ("Пчёлы на крыше: 5 секретов — «городской мёд»", "Пчёлы на крыше: 5 секретов — «городской мёд»"),
        ("هل النحل في المدن آمن؟ دليل، خطوة بخطوة", "هل النحل في المدن آمن؟ دليل، خطوة بخطوة"),
        ("מדריך: דבורים על הגג – “מדריך” ב־5 צעדים", "מדריך: דבורים על הגג – “מדריך” ב־5 צעדים"),
        ("Bees — the secret 👨\u200d👩\u200d👧 👍🏽 ✅", "Bees — the secret"),  # an emoji's joiners and skin tone go with it
        ("Top 5 C++ tips at 40°C for $5 ©", "Top 5 C++ tips at 40°C for $5"),
        ("می\u200cخواهیم زنبور داشته باشیم", "می\u200cخواهیم زنبور داشته باشیم"),  # Persian's zero-width non-joiner is part of the word
    ],
)
def test_clean_headline(raw, clean):
    assert clean_headline(raw) == clean


def test_headlines_are_distinct_within_the_word_limit_and_resampled():
    engine = FakeEngine()
    first_round = ["Bees are back", "bees are BACK!", "A headline that is far too long to be accepted here", "",
                   "Hives on roofs", "Hives on roofs.", "Bees are back: and more words than six allow", "", ""]
    engine.enqueue(*first_round, "Cities love bees", "", "", "")
    gen = HeadlineGenerator(engine=engine)
    result = gen({"topic": "bees"}, n=3, max_words=6)
    assert result["headlines"] == ["Bees are back", "Hives on roofs", "Cities love bees"]
    assert len(engine.calls) == 2  # a second round asked for the missing ones


def test_a_headline_tone_goes_into_the_prompt_as_adcopys_does_and_none_leaves_it_as_it_was(tmp_path):
    engine = FakeEngine()
    gen = HeadlineGenerator(engine=engine)
    for tone in ("playful", ""):
        engine.enqueue("Bees are back")
        gen({"topic": "bees"}, n=1, style="question", tone=tone)
    toned, plain = (str(prompts[0][-1]["content"]) for prompts, _ in engine.calls)
    assert "Write a headline phrased as a question, playful in tone, about: bees." in toned
    assert "Write a headline phrased as a question about: bees." in plain and "tone" not in plain
    with pytest.raises(OptionError, match="^tone must be a few words") as raised:
        gen({"topic": "bees"}, tone=" ")
    assert raised.value.option == "tone"
    older = tmp_path / "older.j2"  # an override made before tone: still fine without it, an error with it (the tone would be dropped)
    older.write_text("---\ngenerator: headline\n---\nA {{ style }} headline about {{ topic }}{{ article }}, {{ max_words }} words at most.\n")
    engine.enqueue("Bees are back")
    assert gen({"topic": "bees"}, n=1, template=str(older))["headlines"] == ["Bees are back"]
    with pytest.raises(OptionError, match="never reads tone"):
        gen({"topic": "bees"}, n=1, template=str(older), tone="playful")


def test_an_articles_lead_in_a_script_without_spaces_between_words_is_cut_to_a_lead_of_tokens():
    from aigc.generators.headline import ARTICLE_TOKENS

    class CountsCharacters(FakeEngine):
        def count_tokens(self, prompt):
            return len(prompt) if isinstance(prompt, str) else super().count_tokens(prompt)

    engine = CountsCharacters()
    engine.enqueue("ภาษาไทย ข่าว")
    article = "ภาษาไทยเป็นภาษาที่มีความซับซ้อน" * 200  # one word as count_words counts it; 6,200 tokens
    with pytest.warns(AigcNote, match=r"the article's lead, its first \d+ tokens \("):
        assert HeadlineGenerator(engine=engine)({"article": article}, n=1)["headlines"] == ["ภาษาไทย ข่าว"]
    prompt = "".join(m["content"] for m in engine.calls[0][0][0])
    lead = max(re.findall("[ก-๛]+", prompt), key=len)
    assert ARTICLE_TOKENS // 2 <= len(lead) <= ARTICLE_TOKENS and article.startswith(lead) and not unicodedata.category(article[len(lead)]).startswith("M")


def test_an_articles_lead_of_unevenly_dense_text_is_cut_to_at_most_its_tokens():
    from aigc.generators.headline import ARTICLE_TOKENS

    class DenseEmoji(FakeEngine):  # an emoji takes 10 tokens, any other character one
        def count_tokens(self, prompt):
            return sum(10 if c == "😀" else 1 for c in prompt) if isinstance(prompt, str) else super().count_tokens(prompt)

    engine = DenseEmoji()
    engine.enqueue("Emoji and letters")
    article = "😀" * 300 + "a" * 6000  # one word; cut in proportion to all of it, its dense start would keep 4,200 tokens
    with pytest.warns(AigcNote, match="the article's lead"):
        HeadlineGenerator(engine=engine)({"article": article}, n=1)
    prompt = "".join(m["content"] for m in engine.calls[0][0][0])
    lead = max(re.findall("😀+a*", prompt), key=len)
    assert article.startswith(lead) and 0 < engine.count_tokens(lead) <= ARTICLE_TOKENS


def test_a_headline_round_after_the_largest_seed_wraps_to_the_smallest():
    engine = FakeEngine()
    engine.enqueue("Bees are back", *[""] * 5, "Hives on roofs")
    result = HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2, sampling={"seed": 2**63 - 1})
    assert result["headlines"] == ["Bees are back", "Hives on roofs"]
    assert [call[1].seed for call in engine.calls] == [2**63 - 1, -(2**63)]


@pytest.mark.parametrize(
    "headline, fitted",
    [
        ("Short and sweet", "Short and sweet"),
        ("City Opens Library: Residents Celebrate the First One in a Century", "City Opens Library"),
        ("A city has finally opened its first public library in a century", ""),
        ("Library: a long explanation of many many words here", ""),
    ],
)
def test_fit_headline_keeps_the_main_clause(headline, fitted):
    assert fit_headline(headline, 6) == fitted


@pytest.mark.parametrize(
    "headline, most, fitted",
    [
        ("城市养蜂：《蜜蜂的秘密》告诉你的五件事，还有更多精彩内容等你发现！", 5, "城市养蜂"),  # a Chinese character is a word, as summarize counts them
        ("城市养蜂《蜜蜂的秘密》告诉你的五件事还有更多精彩内容", 12, "城市养蜂《蜜蜂的秘密》"),  # up to the last punctuation mark that fits
        ("「東京の桜」今年は早い？開花は三月末", 12, "「東京の桜」今年は早い？"),
        ("城市屋顶养蜂告诉你的五件事", 6, "城市屋顶养蜂"),  # no punctuation: characters
        ("城市养蜂的秘密", 7, "城市养蜂的秘密"),
    ],
)
def test_fit_headline_counts_chinese_and_japanese_by_character_and_cuts_at_punctuation(headline, most, fitted):
    assert fit_headline(headline, most) == fitted


def test_a_chinese_headline_is_held_to_max_words():
    engine = FakeEngine()
    engine.enqueue(*["城市养蜂：《蜜蜂的秘密》告诉你的五件事，还有更多精彩内容等你发现！"] * 3)
    assert HeadlineGenerator(engine=engine)({"topic": "城市屋顶养蜂"}, n=1, max_words=5)["headlines"] == ["城市养蜂"]


def test_many_headlines_sample_no_more_than_max_n_completions_a_round():
    import random
    import string

    from aigc.engine.sampling import MAX_N

    rng = random.Random(0)
    engine = FakeEngine()
    engine.enqueue(*[" ".join("".join(rng.choices(string.ascii_lowercase, k=7)) for _ in range(3)) for _ in range(50)])  # 50 distinct ones
    result = HeadlineGenerator(engine=engine)({"topic": "bees"}, n=50, sampling={"seed": 1})
    assert len(result["headlines"]) == 50
    assert engine.calls[0][1].n == MAX_N  # not 3 x 50


def test_too_few_distinct_headlines_are_given_with_how_many_are_missing():
    engine = FakeEngine()
    engine.enqueue(*["Same words again"] * 100)
    with pytest.warns(AigcWarning, match=r"^only 1 of the 3 headlines asked for came out distinct and within the word limit; raise temperature or max_words, or ask for fewer \(n\)$"):
        result = HeadlineGenerator(engine=engine)({"topic": "bees"}, n=3, sampling={"seed": 1})
    assert result == {"headlines": ["Same words again"], "missing": 2, "cut_off": False}
    assert len(engine.calls) == MAX_ROUNDS  # every round tried for the others first


def test_no_headline_at_all_is_a_bad_input_naming_what_to_raise():
    engine = FakeEngine()
    engine.enqueue(*["A headline far longer than the three words allowed"] * 100)
    with pytest.raises(BadInputError, match=rf"^no headline of at most 3 words came out of {MAX_ROUNDS} tries; raise temperature or max_words$"):
        HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2, max_words=3, sampling={"seed": 1})


class Cutting(FakeEngine):
    """Answers of more words than max_tokens are cut there, as a model's are."""

    def generate(self, prompts, params):
        groups = super().generate(prompts, params)
        for group in groups:
            for c in group:
                if len(c.text.split()) > params.max_tokens:
                    c.text, c.finish_reason = " ".join(c.text.split()[: params.max_tokens]), "length"
        return groups


def test_headlines_cut_off_by_max_tokens_are_not_kept():
    engine = Cutting()
    engine.enqueue("Bees return to the city rooftops", "Short one", *["Hives everywhere in town now"] * 100)
    with pytest.warns(AigcWarning, match=r"^only 1 of the 2 headlines asked for came out distinct and within the word limit; some were cut off at the token limit; raise max_tokens$"):
        result = HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2, sampling={"max_tokens": 4, "seed": 1})
    assert result == {"headlines": ["Short one"], "missing": 1, "cut_off": True}
    engine = Cutting()
    engine.enqueue(*["Hives everywhere in town now"] * 100)
    with pytest.raises(BadInputError, match=r"^no headline came out whole \(\d+ cut off at max_tokens=4\); raise max_tokens$"):  # the caller's max_tokens: a 400, CLI exit 2
        HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2, sampling={"max_tokens": 4, "seed": 1})


def test_headline_needs_topic_or_article_and_valid_n():
    gen = HeadlineGenerator(engine=FakeEngine())
    with pytest.raises(BadInputError, match="^give a topic or an article to write headlines for, not both$"):
        gen({"topic": "a", "article": "b"})
    with pytest.raises(BadInputError, match="^give a topic or an article to write headlines for$"):
        gen({"topic": None})
    with pytest.raises(BadInputError, match="got the key\\(s\\) 'topik'"):
        gen({"topik": "bees"})
    with pytest.raises(BadInputError, match="the topic is empty"):
        gen({"topic": "  ", "article": None})
    with pytest.raises(OptionError, match="^n must be") as raised:
        gen({"topic": "a"}, n=0)
    assert raised.value.option == "n"


def test_an_option_with_no_default_is_required_and_a_list_option_takes_comma_separated_text():
    import dataclasses

    from aigc.generators.base import Generator

    class Styled(Generator):
        name = "styled"

        @dataclasses.dataclass
        class Options:
            style: str
            n: int = 1
            tags: list[str] = dataclasses.field(default_factory=list)

    with pytest.raises(OptionError, match="^style is required by styled; give it$"):
        Styled(engine=FakeEngine()).validate({"n": 2})
    assert Styled(engine=FakeEngine()).validate({"style": "terse"}).style == "terse"
    assert Styled(engine=FakeEngine()).validate({"style": "terse", "tags": "a, b,"}).tags == ["a", "b"]  # -O tags=a,b
    with pytest.raises(OptionError, match="^tags must be a list of texts"):
        Styled(engine=FakeEngine()).validate({"style": "terse", "tags": [1]})


def test_chat_trims_old_turns_but_keeps_the_system_prompt():
    engine = FakeEngine(context_length=120)
    engine.enqueue("ok")
    gen = ChatGenerator(engine=engine)
    history = []
    for i in range(10):
        history += [{"role": "user", "content": f"question {i} " + "w " * 10}, {"role": "assistant", "content": "a " * 10}]
    history.append({"role": "user", "content": "last question"})
    result = gen(history, system="Be kind.", sampling={"max_tokens": 40})
    sent = engine.calls[0][0][0]
    assert sent[0] == {"role": "system", "content": "Be kind."}
    assert sent[-1]["content"] == "last question"
    assert engine.count_tokens(sent) <= 120 - 40
    assert len(sent) < len(history)
    assert result["text"] == "ok"
    whole = [{"role": "system", "content": "Be kind."}, *history, {"role": "assistant", "content": "ok"}]
    assert result["messages"] == whole and result["dropped_messages"] == len(history) - (len(sent) - 1)  # a caller goes on from the whole conversation
    engine.enqueue("ok")
    stream = gen.stream(history, {"max_tokens": 40}, system="Be kind.")
    assert "".join(stream) == "ok" and engine.calls[1][0] == [sent]
    assert (stream.result["messages"], stream.result["dropped_messages"]) == (whole, result["dropped_messages"])
    engine.enqueue("ok")
    assert gen(history[-3:], system="Be kind.", sampling={"max_tokens": 40})["dropped_messages"] == 0


def test_a_stream_with_bad_settings_or_input_fails_at_the_call():
    from aigc.generators.template import TemplateGenerator

    for call in (lambda: ChatGenerator(engine=FakeEngine()).stream("hi", {"bogus": 1}), lambda: ChatGenerator(engine=FakeEngine()).stream("  "),
                 lambda: ChatGenerator(engine=FakeEngine()).stream("hi", [("temperature", 1)]), lambda: TemplateGenerator(engine=FakeEngine()).stream({"input": "x"}, {"n": 2})):
        with pytest.raises(BadInputError):
            call()  # not only when the first piece is read


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"sampling": [("temperature", 1)]}, "sampling must be a dict of settings"),
        ({"sampling": {"temprature": 1}}, "unknown sampling setting temprature"),
        ({"path": 5}, "path must be a file's name (str or Path), got int"),
        ({"keep": "no"}, "keep must be True or False, got 'no'"),
        ({"system": 5}, "system must be text, got 5"),
    ],
)
def test_a_session_checks_its_arguments_when_it_is_made(kwargs, words):
    engine = FakeEngine()
    with pytest.raises(BadInputError) as info:
        ChatSession(ChatGenerator(engine=engine), **kwargs)
    assert words in str(info.value) and engine.calls == []
    session = ChatSession(ChatGenerator(engine=engine))
    for call in (lambda: session.set_system(5), lambda: session.load(5), lambda: session.save(None)):
        with pytest.raises(OptionError, match="^(system must be text, got 5|path must be a file's name \\(str or Path\\), got (int|None))$"):
            call()


def test_chat_takes_openai_style_messages():
    engine = FakeEngine()
    engine.enqueue("Hi.")
    messages = [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]}]
    ChatGenerator(engine=engine)(messages)
    assert engine.calls[0][0][0] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
    with pytest.raises(BadInputError, match="chat message 0 must be"):
        ChatGenerator(engine=engine)([{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}])


def test_several_system_messages_are_all_kept_as_one_system_prompt():
    engine = FakeEngine()
    engine.enqueue("Arr.", "Arr.")
    messages = [{"role": "system", "content": "You are a pirate."}, {"role": "user", "content": "Hi"}, {"role": "developer", "content": "Answer in French."}, {"role": "user", "content": "Again"}]
    ChatGenerator(engine=engine)(messages)
    assert engine.calls[0][0][0] == [{"role": "system", "content": "You are a pirate.\n\nAnswer in French."}, messages[1], messages[3]]
    ChatGenerator(engine=engine)(messages, system="Be brief.")  # a system prompt given replaces them all, as before
    assert engine.calls[1][0][0] == [{"role": "system", "content": "Be brief."}, messages[1], messages[3]]


def test_one_shot_prompt_too_long_is_bad_input():
    gen = ChatGenerator(engine=FakeEngine(context_length=50))
    with pytest.raises(BadInputError, match="shorten it or lower max_tokens$"):
        gen("word " * 30, sampling={"max_tokens": 40})
    with pytest.raises(BadInputError, match=r"^the prompt takes \d+ tokens, but fake holds 50 with the answer; shorten it$"):
        gen("word " * 100, sampling={"max_tokens": 10})  # fewer tokens would not make it fit


def test_session_keeps_partial_reply_when_stopped(tmp_path):
    engine = FakeEngine()
    engine.enqueue("one two three four")
    session = ChatSession(ChatGenerator(engine=engine), system="sys")
    stream = session.send("hello")
    next(stream)
    stream.close()  # what Ctrl-C does to the REPL's loop
    assert session.messages == [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "one"}]
    session.save(str(tmp_path / "c.md"))
    assert "## System\n\nsys" in (tmp_path / "c.md").read_text()


def test_session_drops_a_turn_that_cannot_be_answered():
    session = ChatSession(ChatGenerator(engine=FakeEngine(context_length=30)), sampling={"max_tokens": 10})
    with pytest.raises(BadInputError):
        list(session.send("word " * 40))
    assert session.messages == []


def test_summaries_are_cut_to_whole_sentences_near_the_target_length():
    engine = FakeEngine()
    sentence = "Bees thrive on city rooftops across Europe and North America today."  # 11 words
    engine.enqueue(" ".join([sentence] * 12))
    result = SummarizeGenerator(engine=engine)(LONG_TEXT, words=40)
    assert result["summary"].endswith(".") and 30 <= result["words"] <= 52
    assert result["summary"].count(sentence) == result["words"] // 11


def test_near_duplicate_headlines_count_once_and_greedy_n_is_refused():
    engine = FakeEngine()
    engine.enqueue("Rooftop Beehives: A New Frontier", "Rooftown Beehives: A New Frontier", "Cities love bees", *[""] * 20)
    assert sorted(HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2)["headlines"]) == ["Cities love bees", "Rooftop Beehives: A New Frontier"]
    with pytest.raises(BadInputError, match="temperature=0 or top_k=1 always picks the same words; raise them, or ask for one \\(n=1\\)"):
        HeadlineGenerator(engine=FakeEngine())({"topic": "bees"}, n=2, sampling={"temperature": 0})
    with pytest.raises(BadInputError, match=r"but temperature=0 \(as is temperature=1e-06, below 1e-05\) or top_k=1 always picks"):  # greedy too, so named
        HeadlineGenerator(engine=FakeEngine())({"topic": "bees"}, n=2, sampling={"temperature": 1e-6})


def test_headlines_kept_are_the_likeliest_per_token_after_the_prompt_best_first():
    class Scoring(FakeEngine):
        likelihood = {"Bees Take Over City Roofs": -5.0, "Bees Roofs Glorbnax Quarterly Edition": -30.0, "Urban Bees": -4.0, "City Bees Thrive": -2.0}

        def score(self, prompt, continuations):
            self.scored = (prompt, continuations)
            return [self.likelihood[c] for c in continuations]

    engine = Scoring()
    engine.enqueue(*Scoring.likelihood)
    result = HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2)
    assert result["headlines"] == ["City Bees Thrive", "Bees Take Over City Roofs"]  # per word here: -0.67, -1.0; "Urban Bees" -2.0, the slip -6.0
    assert engine.scored[0] == engine.calls[0][0][0] and sorted(engine.scored[1]) == sorted(Scoring.likelihood)  # scored after the prompt sampled from
    assert result["missing"] == 0


def test_headlines_from_an_engine_that_cannot_score_chat_stay_as_sampled():
    class Remote(FakeEngine):
        can_score_chat = False

        def score(self, prompt, continuations):
            raise AssertionError("a remote API scores text prompts only")

    engine = Remote()
    engine.enqueue("Bees Take Over City Roofs", "Urban Bees", "City Bees Thrive")
    assert HeadlineGenerator(engine=engine)({"topic": "bees"}, n=2)["headlines"] == ["Bees Take Over City Roofs", "Urban Bees"]


def test_several_chat_or_template_answers_with_greedy_settings_are_refused_before_any_model_call():
    from aigc.generators.template import TemplateGenerator

    engine = FakeEngine()
    same = "2 answers need sampling, but temperature=0 or top_k=1 always picks the same words; raise them, or ask for one \\(n=1\\)"
    with pytest.raises(BadInputError, match=same):  # a temperature given is kept
        ChatGenerator(engine=engine)("Name a colour", sampling={"n": 2, "temperature": 0})
    with pytest.raises(BadInputError, match=same):
        ChatGenerator(engine=engine).many(["Hi", "Name a colour"], sampling={"n": 2, "temperature": 0.7, "top_k": 1})
    with pytest.raises(BadInputError, match=same):
        TemplateGenerator(engine=engine)({"input": "hi"}, sampling={"n": 2, "temperature": 0})
    assert engine.calls == []
    engine.enqueue("Red", "Blue", "Hello")
    assert ChatGenerator(engine=engine)("Name a colour", sampling={"n": 2, "temperature": 0.7})["choices"] == ["Red", "Blue"]
    assert TemplateGenerator(engine=engine)({"input": "hi"}, sampling={"temperature": 0})["text"] == "Hello"  # one greedy answer is fine


def test_several_chat_answers_with_no_temperature_given_are_sampled_as_aigc_run_samples_them():
    engine = FakeEngine()
    engine.enqueue("Red", "Blue", "Hi")
    assert ChatGenerator(engine=engine)("Name a colour", sampling={"n": 2})["choices"] == ["Red", "Blue"]
    assert engine.calls[-1][1].temperature == 0.7 and engine.calls[-1][1].n == 2
    ChatGenerator(engine=engine)("Hello")
    assert engine.calls[-1][1].temperature == 0  # one answer stays greedy


@pytest.mark.parametrize(
    "generator, inputs, message",
    [
        (HeadlineGenerator, "urban bees", "headline takes {'topic': TEXT} or {'article': TEXT}, got str"),
        (HeadlineGenerator, {"topic": 5}, "headline takes {'topic': TEXT} or {'article': TEXT}, got {'topic': int}"),
        (HeadlineGenerator, {"article": ["a", "b"]}, "got {'article': list}"),
        (ChatGenerator, None, "chat takes a prompt (str) or messages"),
        (ChatGenerator, [], "got an empty list"),
        (ChatGenerator, [{"role": "user"}], "chat message 0 must be {'role': 'system', 'user' or 'assistant', 'content': TEXT}, got {'role': 'user'}"),
        (ChatGenerator, [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}], "chat message 1 must be"),
        (SummarizeGenerator, b"abc", "summarize takes text (str), got bytes"),
        (ClassifyGenerator, 5, "classify takes text (str), got int"),
        (SummarizeGenerator, ["a", "b"], "summarize takes text (str), got list; for a list of inputs, call many: aigc.get_generator('summarize').many(inputs)"),  # as a pipeline takes them
        (TranslateGenerator, ("a",), "translate takes text (str), got tuple; for a list of inputs, call many"),
        (ClassifyGenerator, ["a"], "got list; for a list of inputs, call many"),
        (HeadlineGenerator, [{"topic": "bees"}], "got list; for a list of inputs, call many: aigc.get_generator('headline').many(inputs)"),
    ],
)
def test_inputs_of_the_wrong_kind_are_bad_input(generator, inputs, message):
    with pytest.raises(BadInputError, match=re.escape(message)):
        generator(engine=FakeEngine()).check_inputs(inputs)


def test_chat_fills_a_templates_one_required_variable_with_the_message():
    engine = FakeEngine()
    engine.enqueue("A short summary.")
    result = ChatGenerator(engine=engine)("Bees make honey on city rooftops.", template="summarize")
    assert result["text"] == "A short summary."
    prompt = engine.calls[0][0][0]
    assert "Bees make honey on city rooftops." in prompt[-1]["content"]


def test_chat_renders_a_templates_other_variables_and_the_message_fills_its_input(tmp_path):
    template = tmp_path / "tone.j2"
    template.write_text("---\nvariables:\n  - name: tone\n  - name: words\n    default: 20\n  - name: input\n---\nIn {{ words + 1 }} words, {{ tone }}: {{ input }}\n")
    engine = FakeEngine()
    engine.enqueue("Fine.")
    ChatGenerator(engine=engine)("bees", template=str(template), variables={"tone": "gently", "words": "9"})
    assert engine.calls[0][0][0][-1]["content"] == "In 10 words, gently: bees"  # "9" read as the default's type
    for variables, words in [
        ({"mood": "x"}, "has no variable mood; its variables: input, tone, words"),
        ({"tone": "x", "input": "y"}, "variables cannot give input: each message fills it"),
        ({"tone": "x", "words": "many"}, "variable words must be a whole number, got 'many'"),
        ("tone=x", "variables must be a dict of template variables, got str"),
    ]:
        with pytest.raises(BadInputError, match=re.escape(words)):
            ChatGenerator(engine=engine)("bees", template=str(template), variables=variables)
    assert len(engine.calls) == 1  # each failed before the model


def test_a_template_that_reads_into_the_message_works_in_a_conversation_as_for_one_prompt(tmp_path, monkeypatch):
    from aigc.cli.chat import _streamed
    from aigc.cli.options import RunOptions

    template = tmp_path / "topic.j2"
    template.write_text("---\nsystem: Keep to the topic.\ndefaults: {max_tokens: 30}\n---\nTopic: {{ input.splitlines()[0] }}\n\n{{ input }}\n")
    engine = FakeEngine()
    engine.enqueue("One.", "Two.", "Three.")
    generator = ChatGenerator(engine=engine)
    generator("Bees\nThey make honey.", template=str(template))
    session = ChatSession(generator, template=str(template))  # the text is rendered with each message, never with none
    assert session.ask("Bees\nWhy honey?") == "Two." and session.settings()["max_tokens"] == 30
    assert session.ask("Wasps\nAnd these?") == "Three."
    assert engine.calls[-1][0][0][0] == {"role": "system", "content": "Keep to the topic."}
    assert engine.calls[-1][0][0][-1]["content"] == "Topic: Wasps\n\nWasps\nAnd these?"
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert _streamed(generator, {"template": str(template)}, RunOptions(), held=False)  # a one-shot answer on a terminal


def test_a_variable_given_leaves_the_message_the_templates_one_required_variable_left(tmp_path):
    template = tmp_path / "pair.j2"
    template.write_text("---\nvariables:\n  - name: question\n  - name: context\n---\n{{ context }} / {{ question }}\n")
    engine = FakeEngine()
    engine.enqueue("Yes.")
    ChatGenerator(engine=engine)("Is it late?", template=str(template), variables={"context": "It is 11pm."})
    assert engine.calls[0][0][0][-1]["content"] == "It is 11pm. / Is it late?"
    with pytest.raises(BadInputError, match="not one required variable left to fill"):
        ChatGenerator(engine=engine)("Is it late?", template=str(template))


@pytest.mark.parametrize("pairs", [0, 1, 3, 50, 2000])
def test_old_turns_are_dropped_to_fit_in_a_few_token_counts_however_long_the_conversation(pairs):
    class CountingEngine(FakeEngine):
        counted = 0

        def count_tokens(self, prompt):
            self.counted += 1
            return super().count_tokens(prompt)

    engine = CountingEngine(context_length=200)
    system = [{"role": "system", "content": "Be brief."}]
    turns = [m for i in range(pairs) for m in ({"role": "user", "content": f"question {i} " + "w " * (i % 7)}, {"role": "assistant", "content": "answer " * (i % 5 + 1)})]
    messages = system + turns + [{"role": "user", "content": "last one"}]
    kept = ChatGenerator(engine=engine).fit(messages, max_tokens=50)
    assert engine.counted <= 2 * (pairs + 1).bit_length() + 2  # not one count per dropped turn
    fitting = [messages[1 + i :] for i in range(0, len(turns) + 1, 2) if engine.count_tokens(system + messages[1 + i :]) <= 150]
    assert kept == system + fitting[0]  # the longest tail that fits, starting at a user message


def _said(role, text):
    return {"role": role, "content": text}


def _length(messages):  # a token count for `longest_fit`: one a character and one a message
    return sum(len(m["content"]) + 1 for m in messages)


def test_a_tool_result_is_kept_with_the_call_it_answers_never_alone():
    from aigc.generators.chat import longest_fit

    call = {"role": "assistant", "content": "", "tool_calls": [{"function": {"name": "get_weather", "arguments": {"city": "Paris"}}}]}
    messages = [_said("user", "q1 " * 20), _said("assistant", "a1 " * 20), _said("user", "weather? " * 20), call, _said("tool", "sunny")]
    round_ = _length(messages[3:])
    assert longest_fit(messages, round_, _length) == (messages[3:], round_)  # the question does not fit: the call and its result do
    assert longest_fit(messages, 0, _length) == (messages[3:], round_)  # nothing fits: still the round, not the result alone
    assert longest_fit(messages, _length(messages[2:]), _length)[0] == messages[2:]
    twice = messages + [_said("tool", "windy")]  # a call answered by two tools
    assert longest_fit(twice, 0, _length)[0] == twice[3:]
    again = messages + [{**call, "tool_calls": [{"function": {"name": "get_time", "arguments": {}}}]}, _said("tool", "noon")]  # a second round
    assert longest_fit(again, _length(again[3:]), _length)[0] == again[3:] and longest_fit(again, 0, _length)[0] == again[5:]


def test_a_system_message_in_the_kept_turns_stays_in_its_place_and_those_dropped_go_first():
    from aigc.generators.chat import longest_fit

    a, b = _said("system", "A"), _said("system", "B: retrieved docs for the next question")
    messages = [a, _said("user", "u1 " * 50), _said("assistant", "a1 " * 50), _said("user", "u2"), _said("assistant", "a2"), b, _said("user", "u3")]
    kept, tokens = longest_fit(messages, 150, _length)
    assert kept == [a, *messages[3:]] and tokens == _length(kept)  # B stays right before the question, as the untrimmed prompt has it
    assert longest_fit(messages, 0, _length)[0] == [a, b, messages[-1]]
    trailing = [a, _said("user", "u1 " * 50), _said("assistant", "a1"), _said("user", "u2"), b]  # a system message last: kept after the question
    assert longest_fit(trailing, 0, _length)[0] == [a, trailing[3], b]


def echo_generator(**extra):
    """A generator class without options whose result is its input as text, with `extra` keys."""
    from aigc.generators.base import Generator

    class Echo(Generator):
        name = "echo"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            return prepared

        def postprocess(self, raw, opts):
            return {"text": raw, **extra}

    return Echo


def test_a_generator_without_options_runs_and_refuses_any_option():
    Echo = echo_generator()
    assert Echo(engine=FakeEngine())("hi") == {"text": "hi"}
    with pytest.raises(BadInputError, match="tone: echo has no such option"):
        Echo(engine=FakeEngine())("hi", tone="warm")


def test_a_generator_missing_a_step_is_a_plugin_error_naming_it():
    from aigc.errors import PluginError
    from aigc.generators.base import Generator

    class Half(Generator):
        name = "half"

        def forward(self, prepared, opts, sampling):
            return prepared

    with pytest.raises(PluginError, match=r"^the half generator does not define preprocess\(self, inputs, opts\); a generator defines preprocess, forward and postprocess"):
        Half(engine=FakeEngine())("hi")
    Half.preprocess = lambda self, inputs, opts: inputs
    with pytest.raises(PluginError, match=r"^the half generator does not define postprocess\(self, raw, opts\)"):
        Half(engine=FakeEngine())("hi")


def test_generate_makes_one_generator_per_task_and_model_settings(tiny_model_dir, monkeypatch):
    import aigc

    made = []
    real = aigc.get_generator
    monkeypatch.setattr(aigc, "get_generator", lambda *args, **kwargs: made.append(kwargs) or real(*args, **kwargs))
    monkeypatch.setattr(aigc, "_generators", {})
    sampling = {"max_tokens": 2, "temperature": 0}
    first = aigc.generate("chat", "Bees", model=str(tiny_model_dir), sampling=sampling, device="cpu")
    again = aigc.generate("chat", "Bees", model=str(tiny_model_dir), sampling=sampling, device="cpu")
    assert first["text"] == again["text"] and len(made) == 1 and made[0]["device"] == "cpu"
    aigc.generate("chat", "Bees", model=str(tiny_model_dir), sampling=sampling, device="cpu", dtype="float32")
    assert len(made) == 2
    assert "".join(aigc.stream("chat", "Bees", model=str(tiny_model_dir), sampling=sampling, device="cpu")).strip() == first["text"]
    assert len(made) == 2  # the same generator as generate's
    assert aigc.generate("chat", "Bees", model=tiny_model_dir, sampling=sampling, device="cpu")["text"] == first["text"]  # a pathlib.Path
    assert aigc.get_generator("chat", model=tiny_model_dir, device="cpu").model == str(tiny_model_dir)
    with pytest.raises(BadInputError, match="summarize does not stream its answer"):
        aigc.stream("summarize", "Bees.", model=str(tiny_model_dir))
    for call in (aigc.generate, aigc.stream):  # a list where a name belongs is named, not a TypeError from the cache
        with pytest.raises(OptionError, match=r"device must be auto, cpu, cuda or mps, got \['cpu'\]"):
            call("chat", "Bees", model=str(tiny_model_dir), device=["cpu"])
    with pytest.raises(OptionError, match="dtype must be"):
        aigc.embed("Bees", dtype={"a": 1})


def test_generate_follows_the_default_model_when_it_changes_while_the_program_runs(monkeypatch):
    import aigc
    from aigc import config
    from aigc.engine import loading

    def load(name, *args, **kwargs):
        engine = FakeEngine()
        engine.name = name or config.default_model()
        engine.enqueue(f"answered by {engine.name}")
        return engine

    monkeypatch.setattr(loading, "load_model", load)
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", "first")
    assert aigc.generate("chat", "Hi")["text"] == "answered by first"
    monkeypatch.setenv("AIGC_DEFAULT_MODEL", "second")  # or `aigc models default second`, in a running notebook
    assert aigc.generate("chat", "Hi")["text"] == "answered by second"
    assert aigc.get_generator("chat")("Hi")["text"] == "answered by second"  # as a generator made now


def test_generate_uses_the_generator_a_plugin_registered_at_run_time_registers_now():
    """A notebook's plugin replaced (a fixed generator) or unregistered: `generate` follows, as
    `get_generator` does, rather than keep the generator it made before."""
    from aigc import hookimpl, plugins

    def plugin(version):
        class Plugin:
            @staticmethod
            @hookimpl
            def register_generators(register):
                register("echo", echo_generator(version=version))

        return Plugin()

    pm = plugins.get_plugin_manager()
    first = plugin(1)
    pm.register(first, name="mine")
    assert aigc.generate("echo", "hi") == {"text": "hi", "version": 1}
    pm.unregister(first)
    pm.register(plugin(2), name="mine")
    assert aigc.generate("echo", "hi") == {"text": "hi", "version": 2}
    pm.unregister(name="mine")
    with pytest.raises(UnknownGeneratorError, match="unknown generator 'echo'"):
        aigc.generate("echo", "hi")


def test_many_runs_inputs_batched_and_in_order_and_names_a_failing_one():
    from aigc.generators.base import Generator

    class Shout(Generator):
        name = "shout"

        def preprocess(self, inputs, opts):
            return inputs

        def forward(self, prepared, opts, sampling):
            if self.engine.count_tokens(prepared) > self.engine.context_length:
                raise BadInputError(f"the text is longer than {self.engine.name}'s {self.engine.context_length}-token context")
            self.engine.generate([prepared], self.sampling(sampling))  # merged with the other inputs' calls
            return prepared

        def postprocess(self, raw, opts):
            return {"text": raw.upper()}

    engine = FakeEngine()
    texts = [f"text {i}" for i in range(20)]
    assert Shout(engine=engine).many(texts, concurrency=8) == [{"text": t.upper()} for t in texts]
    assert len(engine.calls) < 20 and sum(len(prompts) for prompts, _ in engine.calls) == 20
    assert Shout(engine=engine).many([]) == []
    with pytest.raises(BadInputError, match="the topic is empty"):
        HeadlineGenerator(engine=engine).many([{"topic": "a"}, {"topic": " "}])  # checked before any model call
    with pytest.raises(BadInputError, match="many takes a list of inputs, got str"):
        SummarizeGenerator(engine=engine).many("one text")
    with pytest.raises(BadInputError, match=r"^input 2: the text is longer than fake's 30-token context"):
        Shout(engine=FakeEngine(context_length=30)).many(["short", "short too", "word " * 40, "word " * 50])


def test_many_leaves_the_generator_as_it_was_and_runs_from_two_threads_at_once():
    import threading

    engine = FakeEngine()
    generator = SummarizeGenerator(engine=engine)
    results, errors = [], []

    def run(texts):
        try:
            results.append(generator.many(texts, words=10, concurrency=4))
        except Exception as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=run, args=([f"Text {t} {i} about bees." for i in range(6)],)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(t.is_alive() for t in threads) and errors == [] and [len(r) for r in results] == [6, 6]
    assert generator.engine is engine
    for bad in (0, 300, 2.5, True):
        with pytest.raises(OptionError, match="^concurrency must be a whole number between 1 and 256"):
            generator.many(["a text"], concurrency=bad)


def test_option_errors_pickle_and_a_template_must_be_named():
    import pickle

    error = pickle.loads(pickle.dumps(OptionError("n", "must be at least 1, got 0")))
    assert (str(error), error.option, error.problem) == ("n must be at least 1, got 0", "n", "must be at least 1, got 0")
    from aigc import templates

    with pytest.raises(BadInputError, match="a template is a name or a .j2 file, got None"):
        templates.get_template(None)


def test_registered_generators_map_each_name_to_its_plugin_and_class():
    import aigc

    assert aigc.registered_generators()["summarize"] == ("aigc.default_plugins.generators", SummarizeGenerator)


def test_registered_models_map_each_alias_to_its_plugin_and_spec_from_the_top_level():
    import aigc

    plugin, spec = aigc.registered_models()["smollm2"]
    assert plugin == "aigc.default_plugins.models" and isinstance(spec, aigc.ModelSpec) and spec.alias == "smollm2"
    assert "registered_models" in aigc.__all__


def test_a_streamed_answer_held_to_a_schema_is_checked_when_it_ends():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}

    class CutEngine(FakeEngine):  # each answer ended by max_tokens, as the engine says
        def generate(self, prompts, params):
            return [[dataclasses.replace(c, finish_reason="length") for c in group] for group in super().generate(prompts, params)]

    cut = CutEngine()
    cut.enqueue('{"a": ')  # what a decoder held to the schema leaves at max_tokens
    with pytest.raises(AigcError, match="cut off at max_tokens=2 before its JSON was complete"):
        list(ChatGenerator(engine=cut).stream("hi", sampling={"json_schema": schema, "max_tokens": 2}))
    engine = FakeEngine()
    gen = ChatGenerator(engine=engine)
    engine.enqueue('{"a": ')  # ended well before max_tokens: not "raise max_tokens"
    with pytest.raises(AnswerJSONError, match="not complete JSON: the test engine answers with the texts queued, not held to JSON schemas: enqueue JSON"):
        list(gen.stream("hi", sampling={"json_schema": schema, "max_tokens": 50}))
    engine.enqueue('{"a": ')  # a stop string the caller gave ended it
    with pytest.raises(BadInputError, match="a stop string ended the answer before its JSON was complete; leave stop out"):
        list(gen.stream("hi", sampling={"json_schema": schema, "max_tokens": 50, "stop": ["1"]}))
    engine.enqueue('{"a": 1}')
    assert "".join(gen.stream("hi", sampling={"json_schema": schema})) == '{"a": 1}'
    session = ChatSession(gen, sampling={"json_schema": schema})
    engine.enqueue('{"a": ')
    with pytest.raises(AigcError, match="not complete JSON"):
        session.ask("hi")
    assert session.messages == []  # a turn that failed the schema is not kept
    with pytest.raises(OptionError, match="^n must be 1 to stream"):
        list(gen.stream("hi", sampling={"n": 2}))


def test_an_answer_nested_too_deeply_is_not_complete_json():
    class Server(FakeEngine):  # an engine with no words of its own for it: a model's server
        schemas_unheld = None

    engine = Server()
    gen = ChatGenerator(engine=engine)
    for call in (gen, lambda *args, **kwargs: list(gen.stream(*args, **kwargs))):
        engine.enqueue("[" * 100000 + "]" * 100000)  # a server that does not follow the schema
        with pytest.raises(AigcError, match="not complete JSON: the model's server does not follow JSON schemas"):
            call("hi", sampling={"json_schema": {"type": "array"}, "max_tokens": 50})


def test_ask_returns_the_reply_as_it_is_kept():
    engine = FakeEngine()
    session = ChatSession(ChatGenerator(engine=engine))
    engine.enqueue("\n\n  Paris.  \n")
    assert session.ask("Capital of France?") == "Paris." == session.messages[-1]["content"]


def test_many_raises_an_inputs_error_as_its_own_class_naming_its_position():
    engine = FakeEngine(context_length=50)
    gen = ChatGenerator(engine=engine)
    with pytest.raises(BadInputError, match=r"^input 1: the prompt is empty"):
        gen.many(["hi", "", "yo"])
    with pytest.raises(ContextLengthError, match=r"^input 1: the prompt takes \d+ tokens") as raised:
        gen.many(["hi", "word " * 100, "yo"], sampling={"max_tokens": 3})
    assert raised.value.at == "input 1"


def test_many_with_on_error_skip_gives_each_failed_inputs_error_in_its_place_and_keeps_the_rest():
    engine = FakeEngine(context_length=50)
    engine.enqueue("one", "three")
    results = ChatGenerator(engine=engine).many(["hi", "word " * 100, "yo"], sampling={"max_tokens": 3}, concurrency=1, on_error="skip")  # one at a time: answers in order
    assert [r["text"] if isinstance(r, dict) else type(r) for r in results] == ["one", ContextLengthError, "three"]
    assert (results[1].at, results[1].index) == ("input 1", 1) and str(results[1]).startswith("input 1: the prompt takes ")
    with pytest.raises(ContextLengthError, match=r"^input 1: "):  # the default, as run_batch words it
        ChatGenerator(engine=engine).many(["hi", "word " * 100], sampling={"max_tokens": 3}, on_error="stop")
    with pytest.raises(OptionError, match="^on_error must be skip or stop, got 'return'"):
        ChatGenerator(engine=engine).many(["hi"], on_error="return")


def test_many_with_on_error_stop_runs_no_input_after_the_first_that_fails():
    Counted = counted("bad")
    with pytest.raises(BadInputError, match=r"^input 1: the model cannot answer this one$") as raised:
        Counted(engine=FakeEngine()).many(["fine", "bad", "later", "later too"], concurrency=1)
    assert Counted.ran == ["fine", "bad"] and raised.value.index == 1
    Counted.ran.clear()
    assert [type(r) for r in Counted(engine=FakeEngine()).many(["fine", "bad", "later"], concurrency=1, on_error="skip")] == [dict, BadInputError, dict]
    assert Counted.ran == ["fine", "bad", "later"]  # skip runs them all


def test_many_with_on_error_skip_gives_an_invalid_inputs_error_in_its_place_and_runs_the_rest():
    engine = FakeEngine()
    engine.enqueue("one", "three")
    results = ChatGenerator(engine=engine).many(["hi", "", "yo"], concurrency=1, on_error="skip")  # as `aigc batch --on-error skip` does
    assert [r["text"] if isinstance(r, dict) else type(r) for r in results] == ["one", BadInputError, "three"]
    assert (results[1].at, results[1].index) == ("input 1", 1) and str(results[1]) == "input 1: the prompt is empty; type a question or pipe some text"


def test_imany_gives_each_result_in_order_before_the_inputs_are_all_read():
    import itertools

    read, told = [], []

    def questions():  # endless, saying how far it was read
        for i in itertools.count():
            read.append(i)
            yield f"question {i}?"

    chat = aigc.get_generator("chat", model="echo", progress=lambda done, total, what: told.append((done, total, what)))
    results = chat.imany(questions(), concurrency=3)
    assert read == []  # nothing is read until a result is asked for
    assert next(results)["text"] == "question 0?" and read == [0, 1, 2]  # read concurrency inputs at a time
    assert [r["text"] for r in itertools.islice(results, 4)] == [f"question {i}?" for i in range(1, 5)] and read == list(range(6))
    results.close()
    assert told == [(0, None, "inputs")] + [(done, None, "inputs") for done in range(1, 6)]  # no len(): no total
    told.clear()
    texts = [f"text {i}" for i in range(5)]
    assert list(chat.imany(texts, concurrency=2)) == chat.many(texts, concurrency=2)
    assert told[:6] == [(done, 5, "inputs") for done in range(6)]
    assert list(chat.imany(iter([]))) == []
    with pytest.raises(BadInputError, match="^imany takes an iterable of inputs, got str; run one input"):
        chat.imany("one text")  # checked when called, as the options are
    with pytest.raises(OptionError, match="^concurrency must be"):
        chat.imany(questions(), concurrency=0)
    with pytest.raises(BadInputError, match="^nope: chat has no such option"):
        chat.imany(questions(), nope=1)


def test_imany_with_on_error_stop_raises_an_inputs_error_at_its_place_and_reads_no_further():
    read = []

    def reading(items):
        for item in items:
            read.append(item)
            yield item

    Counted = counted("bad")
    results = Counted(engine=FakeEngine()).imany(reading(["fine", "bad", "later", "later too"]), concurrency=1)
    assert next(results) == {"text": "fine"}
    with pytest.raises(BadInputError, match=r"^input 1: the model cannot answer this one$") as raised:
        next(results)
    assert raised.value.index == 1 and Counted.ran == ["fine", "bad"] and read == ["fine", "bad"]
    read.clear()
    engine = FakeEngine()
    engine.enqueue("one")
    results = ChatGenerator(engine=engine).imany(reading(["hi", "", "yo"]))  # an invalid input: checked as it is read
    assert next(results)["text"] == "one"
    with pytest.raises(BadInputError, match="^input 1: the prompt is empty") as raised:
        next(results)
    assert raised.value.at == "input 1" and read == ["hi", ""]


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_imany_gives_the_results_of_the_inputs_read_before_the_inputs_iterable_raises_then_its_error(on_error):
    def broken():
        yield "a?"
        yield "b?"
        raise ValueError("the source broke")

    results = aigc.get_generator("chat", model="echo").imany(broken(), concurrency=4, on_error=on_error)
    assert [next(results)["text"], next(results)["text"]] == ["a?", "b?"]
    with pytest.raises(ValueError, match="^the source broke$"):
        next(results)


def test_imany_with_on_error_skip_gives_each_failed_or_invalid_inputs_error_in_its_place():
    Counted = counted("bad")
    results = list(Counted(engine=FakeEngine()).imany(iter(["fine", "bad", "later"]), concurrency=1, on_error="skip"))
    assert [type(r) for r in results] == [dict, BadInputError, dict] and results[1].index == 1 and Counted.ran == ["fine", "bad", "later"]
    engine = FakeEngine()
    engine.enqueue("one", "three")
    results = list(ChatGenerator(engine=engine).imany(iter(["hi", "", "yo"]), concurrency=1, on_error="skip"))
    assert [r["text"] if isinstance(r, dict) else type(r) for r in results] == ["one", BadInputError, "three"]
    assert str(results[1]) == "input 1: the prompt is empty; type a question or pipe some text"


def test_sampling_settings_are_checked_for_every_task_and_named_when_given_as_options():
    engine = FakeEngine()
    with pytest.raises(BadInputError, match=r"^max_tokens: chat has no such option; its options: no_variable_replacement, system, template, variables; give max_tokens as a sampling setting$"):
        ChatGenerator(engine=engine)("hi", max_tokens=30)
    classify = ClassifyGenerator(engine=engine)
    with pytest.raises(BadInputError, match="^there is no text to classify$"):  # one text: no position
        classify("  ", labels="a,b")
    with pytest.raises(BadInputError, match="unknown sampling setting temprature"):
        classify("good", sampling={"temprature": 0.5}, labels="a,b")
    with pytest.raises(BadInputError, match="sampling must be a dict of settings such as"):
        ChatGenerator(engine=engine)("hi", sampling=0.5)
    with pytest.raises(BadInputError, match=r"got SamplingParams \(it sets every setting, its defaults over the task's too\); give only those to change$"):
        ChatGenerator(engine=engine)("hi", sampling=SamplingParams(max_tokens=30))
    with pytest.raises(BadInputError, match="unknown sampling setting temprature"):
        ChatGenerator(engine=engine).many(["hi"], sampling={"temprature": 0.5})


def test_a_misspelt_option_names_the_one_it_is_close_to():
    with pytest.raises(UnknownGeneratorError, match=r"^unknown generator 'summarise' \(did you mean summarize\?\); known: "):
        aigc.get_generator("summarise")
    with pytest.raises(OptionError, match=r"^lenght: summarize has no such option \(did you mean length\?\); its options: batch_size, ") as told:
        SummarizeGenerator(engine=FakeEngine())("Bees make honey.", lenght="short")
    assert told.value.option == "lenght"
    with pytest.raises(OptionError, match=r"^temprature: chat has no such option, nor wordz \(did you mean temperature\?\); its options: .*; give temperature as a sampling setting$"):
        ChatGenerator(engine=FakeEngine())("hi", temprature=0.5, wordz=3)  # a sampling setting misspelt, where it does not go


def test_tasks_that_generate_no_text_refuse_sampling_settings_naming_them(monkeypatch):
    import aigc
    from aigc.generators.embed import EmbedGenerator

    made = {}
    monkeypatch.setattr(aigc, "_generator", lambda task, *settings: made[task])  # what aigc.generate uses
    for task, generator, options in (("classify", ClassifyGenerator(engine=FakeEngine()), {"labels": "a,b"}), ("embed", EmbedGenerator(engine=FakeEngine()), {})):
        generator.name, made[task] = task, generator
        with pytest.raises(BadInputError, match=rf"^{task} takes no sampling options \(it generates no text\): drop temperature, seed$"):
            aigc.generate(task, "good", sampling={"temperature": 0.5, "seed": 1, "top_k": None}, **options)
        with pytest.raises(BadInputError, match=rf"^{task} takes no sampling options"):
            generator.many(["good"], sampling={"max_tokens": 3}, **options)
        with pytest.raises(BadInputError, match=rf"^max_tokens: {task} has no such option; .*\({task} generates no text, so it takes no sampling settings\)$"):
            generator("good", max_tokens=3, **options)
        assert aigc.generate(task, "good", sampling={"temperature": None}, **options)  # an unset setting is no setting
    assert aigc.generate("classify", "good", labels="a,b", threshold=0.5, multi_label=True)["labels"] is not None  # its own options still work
    from aigc.generators.image import ImageGenerator

    with pytest.raises(BadInputError, match=r"^image takes no sampling options \(it generates no text\): drop seed, top_p; give seed as an option of image$"):
        ImageGenerator(engine=FakeEngine())("a bee", sampling={"seed": 1, "top_p": 0.5})  # refused before any image model loads


def test_a_session_file_that_cannot_be_written_fails_before_any_reply(tmp_path):
    with pytest.raises(BadInputError, match="directory .* does not exist"):
        ChatSession(ChatGenerator(engine=FakeEngine()), path=tmp_path / "missing" / "s.json")


def test_chats_default_max_tokens_leaves_room_in_a_small_context():
    engine = FakeEngine(context_length=400)
    gen = ChatGenerator(engine=engine)
    engine.enqueue("ok")
    gen("hi")
    assert engine.calls[-1][1].max_tokens == 100  # a quarter of the context, not the default 512
    engine.enqueue("ok")
    gen("hi", sampling={"max_tokens": 300})
    assert engine.calls[-1][1].max_tokens == 300  # asked for: as asked
    assert ChatSession(gen).settings()["max_tokens"] == 100


def test_a_summary_cut_off_by_max_tokens_says_so_and_drops_its_unfinished_sentence():
    from aigc.engine.base import Completion

    class CutEngine(FakeEngine):
        def generate(self, prompts, params):
            return [[Completion(self.queue.pop(0), 9, params.max_tokens, "length")] for _ in prompts]

    engine = CutEngine()
    engine.enqueue("Bees are back in the city. Rooftop hives feed on the")
    result = SummarizeGenerator(engine=engine)(LONG_TEXT, sampling={"max_tokens": 12})
    assert result["summary"] == "Bees are back in the city." and result["cut_off"] is True
    engine.enqueue("Bees are back in the city.")
    assert SummarizeGenerator(engine=engine)(LONG_TEXT)["summary"] == "Bees are back in the city."  # a whole last sentence stays
    engine.enqueue("Bees are back. The keepers say 'feed the'", 'Bees are back. They said "Bees are back."')
    assert SummarizeGenerator(engine=engine)(LONG_TEXT)["summary"] == "Bees are back."  # a quote is no sentence's end
    assert SummarizeGenerator(engine=engine)(LONG_TEXT)["summary"] == 'Bees are back. They said "Bees are back."'  # one after its end is
    plain = FakeEngine()
    plain.enqueue("Bees are back in the city. Rooftop hives thrive.")
    assert SummarizeGenerator(engine=plain)(LONG_TEXT)["cut_off"] is False


def test_a_template_answer_streams_as_it_is_written(tmp_path, monkeypatch):
    from aigc.generators.template import TemplateGenerator

    engine = FakeEngine()
    engine.enqueue("Hello there, friend.")
    pieces = list(TemplateGenerator(engine=engine).stream({"input": "hi"}, template="chat"))
    assert len(pieces) > 1 and "".join(pieces) == "Hello there, friend."
    with pytest.raises(BadInputError, match="not held to a schema"):
        list(TemplateGenerator(engine=engine).stream({"input": "hi"}, sampling={"n": 2}, template="chat"))


def test_summaries_and_headlines_read_a_documents_words_not_its_front_matter():
    doc = "---\ntitle: Field notes\ntags: [x]\n---\n" + LONG_TEXT
    engine = FakeEngine()
    engine.enqueue("Bees.")
    SummarizeGenerator(engine=engine)(doc, words=5)
    engine.enqueue("Bees Buzz Along", "Bees Buzz Along Again")
    HeadlineGenerator(engine=engine)({"article": doc}, n=1)
    prompts = [prompt[-1]["content"] for call in engine.calls for prompt in call[0]]
    assert all("Some text about bees." in p and "tags:" not in p and "Field notes" not in p for p in prompts)
    only = "---\ntitle: Field notes\n---\n"
    with pytest.raises(BadInputError, match="only front matter"):
        SummarizeGenerator(engine=engine)(only)
    with pytest.raises(BadInputError, match="only front matter"):
        HeadlineGenerator(engine=engine)({"article": only})


def test_inline_code_of_three_backticks_opens_no_fence_so_later_comments_are_still_left_out():
    from aigc.markdown_blocks import without_comments

    doc = "```ls``` lists files.\n\nPublic text. <!-- secret: client unhappy -->\n\nEnd.\n\n~~~\n<!-- kept -->\n~~~\nLast <!-- note --> word."
    assert without_comments(doc) == "```ls``` lists files.\n\nPublic text.\n\nEnd.\n\n~~~\n<!-- kept -->\n~~~\nLast word."
    assert without_comments("a <!-- b <!-- c\n\n``` d") == "a <!-- b <!-- c\n\n``` d"  # unclosed: text, kept as it is


def test_summaries_and_headlines_leave_out_html_comments_but_not_in_code():
    from aigc.markdown_blocks import without_comments

    doc = "# Post\n\n" + LONG_TEXT.strip() + " <!-- internal: client is unhappy -->\n\n<!--\nTODO: add quote\n-->\n\nUse `<!-- x -->` here.\n\n```html\n<!-- kept -->\n```\n"
    assert without_comments(doc) == "# Post\n\n" + LONG_TEXT.strip() + "\n\nUse `<!-- x -->` here.\n\n```html\n<!-- kept -->\n```\n"
    engine = FakeEngine()
    engine.enqueue("Bees.")
    SummarizeGenerator(engine=engine)(doc, words=5)
    engine.enqueue("Bees Buzz Along", "Bees Buzz Along Again")
    HeadlineGenerator(engine=engine)({"article": doc}, n=1)
    prompts = [prompt[-1]["content"] for call in engine.calls for prompt in call[0]]
    assert len(prompts) >= 2 and all("internal" not in p and "TODO" not in p for p in prompts)
    with pytest.warns(AigcWarning, match=r"^the text \(3 words\) is no longer"):  # the comment's words not counted
        short = SummarizeGenerator(engine=engine)("Public text here. <!-- internal: do not publish -->", words=50)
    assert short["unchanged"] and short["summary"] == "Public text here."  # given back without the note
    with pytest.raises(BadInputError, match="only front matter or comments"):
        SummarizeGenerator(engine=engine)("<!-- a note -->\n")


def test_chinese_and_japanese_words_are_counted_by_character():
    from aigc.sentences import count_words, text_up_to_word

    assert count_words("蜜蜂在屋顶上生活。Bees live here.") == 11 and text_up_to_word("蜜蜂在屋顶上", 2) == "蜜蜂"
    assert count_words("はい、そうです。\u3000ＡＢＣ — ok") == 8  # punctuation, ideographic spaces and dashes are no words
    assert count_words("!" * 100_000 + " a") == 1  # linear: no backtracking over a long run
    chinese = "蜜蜂在城市的屋顶上生活，它们每天采集花蜜，酿造蜂蜜。" * 4  # one "word" between spaces
    engine = FakeEngine()
    engine.enqueue("蜜蜂在屋顶上。")
    result = SummarizeGenerator(engine=engine)(chinese, words=10)
    assert result["unchanged"] is False and result["words"] == 6 and len(engine.calls) == 1


def test_korean_words_are_counted_between_spaces_and_emoji_count_as_words():
    from aigc.sentences import count_words

    assert count_words("안녕하세요 여러분. 오늘은 날씨가 정말 좋습니다.") == 6  # Korean puts spaces between words, as word processors count them
    assert count_words("😀👍🏽 👨‍👩‍👧") == 2 and count_words("great 🎉 — ok") == 3
    with pytest.warns(AigcWarning, match=r"^the text \(6 words\) is no longer"):
        assert SummarizeGenerator(engine=FakeEngine())("안녕하세요 여러분. 오늘은 날씨가 정말 좋습니다.", words=10)["words"] == 6


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("「桜が好きです。」と田中さんは言った。本当？！花見は大切な文化です。", ["「桜が好きです。」と田中さんは言った。", "本当？！", "花見は大切な文化です。"]),
        ("他说：“你好。”然后走了。真的吗？？", ["他说：“你好。”然后走了。", "真的吗？？"]),  # a quote's full stop does not end the sentence it is in
        ("「ありがとう。」「どういたしまして。」", ["「ありがとう。」", "「どういたしまして。」"]),
        ("今日は晴れ．明日は雨｡円周率は３．１４です．", ["今日は晴れ．", "明日は雨｡", "円周率は３．１４です．"]),  # full-width and half-width full stops, not a decimal point
        ("好。。。真的？！」他说。是吗！！ 对。", ["好。。。", "真的？！」他说。", "是吗！！", "对。"]),
    ],
)
def test_chinese_and_japanese_sentences_keep_their_closing_quotes_and_runs_of_marks(text, sentences):
    from aigc.sentences import split_sentences

    assert split_sentences(text) == sentences


def test_a_long_run_of_marks_is_one_sentence_split_in_linear_time():
    from aigc.sentences import split_sentences

    assert split_sentences("本当" + "！" * 100_000 + "」と") == ["本当" + "！" * 100_000 + "」と"]  # linear: a run is tried once


def test_chinese_and_japanese_sentences_and_lines_are_joined_without_spaces():
    from aigc.sentences import join_text

    assert join_text(["内容创作", "的方式。", "许多公司", "Python is", "fun.", "他说：“你好。”", "然后走了。"]) == "内容创作的方式。许多公司 Python is fun. 他说：“你好。”然后走了。"
    assert join_text(["안녕하세요", "여러분."]) == "안녕하세요 여러분."  # Korean puts spaces between words
    engine = FakeEngine()
    engine.enqueue("人工智能正在改变内容创作\n的方式。许多公司开始使用大型语言模型！但是专家警告。", "「桜が好きです。」と田中さんは言った。本当？！花見は大切な文化です。")
    generator = SummarizeGenerator(engine=engine)
    assert generator(LONG_TEXT)["summary"] == "人工智能正在改变内容创作的方式。许多公司开始使用大型语言模型！但是专家警告。"
    assert generator(LONG_TEXT, format="bullets")["summary"] == "- 「桜が好きです。」と田中さんは言った。\n- 本当？！\n- 花見は大切な文化です。"
    with pytest.warns(AigcWarning, match="no longer than the summary"):
        given = generator("人工智能正在改变内容创作\n的方式。许多公司开始使用\n大型语言模型。\n", words=100, format="bullets")["summary"]
    assert given == "- 人工智能正在改变内容创作的方式。\n- 许多公司开始使用大型语言模型。"


def test_a_short_document_given_back_as_bullets_keeps_items_apart_without_headings():
    doc = "# Q3 results\n\nRevenue grew. Costs fell.\n\n- Hiring paused\n- Office moved\n\n```\nx = 1\n```\n"
    with pytest.warns(AigcWarning, match=r"^the text \(8 words\) is no longer"):
        result = SummarizeGenerator(engine=FakeEngine())(doc, words=200, format="bullets")
    assert result["unchanged"] and result["summary"] == "- Revenue grew.\n- Costs fell.\n- Hiring paused\n- Office moved"
    doc = "Results\n=======\n\nSales rose.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    with pytest.warns(AigcWarning, match=r"^the text \(2 words\) is no longer"):
        assert SummarizeGenerator(engine=FakeEngine())(doc, words=200, format="bullets")["summary"] == "- Sales rose."  # setext headings and tables left out
    with pytest.warns(AigcWarning, match=r"^the text \(3 words\) is no longer"):
        assert SummarizeGenerator(engine=FakeEngine())("# Only a heading", words=200, format="bullets")["summary"] == "- Only a heading"


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"foo": 1}, "BadInputError", "chat generators take engine, model, device"),
        ({"modle": "smollm2"}, "BadInputError", "; not modle (did you mean model?)"),
        ({"foo": 1, "task": "image"}, "BadInputError", "image generators take text_model, engine, model"),  # its **kwargs go to Generator
        ({"model": 5}, "OptionError", "model must be a model name or path (text), got int"),
        ({"model": ["smollm2"], "task": "image"}, "OptionError", "model must be a model name or path (text), got list"),
        ({"trust_remote_code": "no"}, "OptionError", "trust_remote_code must be True or False, got 'no'"),
        ({"progress": 5}, "OptionError", "progress must be a function (or None), got int"),
        ({"engine": "smollm2"}, "OptionError", "engine must be an aigc Engine, as aigc.load_model(NAME) gives, got str; to pick a model by name, give model='smollm2'"),
        ({"model": FakeEngine()}, "OptionError", "model must be a model name or path (text), got FakeEngine; to run a loaded engine, give engine=it: aigc.get_generator('chat', engine=...)"),
        ({"device": "tpu"}, "OptionError", "device must be auto, cpu, cuda or mps, got 'tpu'"),
        ({"quantize": "int2"}, "OptionError", "quantize must be none, int4 or int8, got 'int2'"),
        ({"model": "sd-turbo"}, "ModelKindError", "sd-turbo is an image model, for the image task (aigc.generate('image', prompt, model='sd-turbo')); pick a text model"),
        ({"model": "openai:notaurl"}, "UnknownModelError", "a remote model needs an http(s) URL"),
        ({"model": "openai:http://[::1/v1#x"}, "UnknownModelError", "'openai:http://[::1/v1#x': a remote model needs an http(s) URL, like openai:http://127.0.0.1:8000/v1#MODEL (Invalid IPv6 URL)"),
        ({"model": "openai:http://host:port/v1"}, "UnknownModelError", "a remote model needs an http(s) URL, like openai:http://127.0.0.1:8000/v1#MODEL (Port could not be cast"),
        ({"model": ""}, "UnknownModelError", "the model name is empty"),
        ({"model": "", "task": "image"}, "UnknownModelError", "the model name is empty"),
        ({"model": "smollm2", "task": "image"}, "ModelKindError", "smollm2 is a text model; the image task needs an image model: an image alias from aigc.registered_models(), a diffusers"),
        ({"model": "no-such-model"}, "UnknownModelError", "unknown model 'no-such-model'"),
        ({"model": "no-such-model", "task": "image"}, "UnknownModelError", "unknown image model 'no-such-model'"),
        ({"model": "./no/such/dir"}, "UnknownModelError", "no such file or directory: ./no/such/dir"),
        ({"model": "remote:nowhere"}, "UnknownRemoteError", "nowhere"),
        ({"model": "openai:http://127.0.0.1:9/v1#x", "device": "cpu"}, "ModelSettingError", "device=cpu sets how a model runs here; openai:http://127.0.0.1:9/v1#x runs on a remote server"),
        ({"model": "openai:http://127.0.0.1:9/v1#x", "dtype": "float16", "quantize": "int8"}, "ModelSettingError", "dtype=float16 and quantize=int8 set how a model runs here"),
        ({"quantize": "int8", "task": "image"}, "ModelSettingError", "quantize=int8 is for text models; image models load as they are"),
        ({"model": "sd-turbo", "quantize": "int4", "task": "image"}, "ModelSettingError", "quantize=int4 is for text models"),
        ({"quantize": "int8", "device": "cuda"}, "ModelSettingError", "quantize=int8 runs on the CPU in float32"),
    ],
)
def test_get_generator_checks_its_arguments_when_the_generator_is_made(kwargs, error, words, monkeypatch):
    from aigc import get_generator
    from aigc.engine import diffusion, loading

    def no_load(*args, **kwargs):
        raise AssertionError("a check loaded a model")

    monkeypatch.setattr(loading, "_load", no_load)
    monkeypatch.setattr(diffusion, "_load", no_load)
    task = kwargs.pop("task", "chat")
    with pytest.raises(BadInputError) as info:
        get_generator(task, **kwargs)
    assert type(info.value).__name__ == error and words in str(info.value)


@pytest.mark.parametrize(
    "task, inputs, options, key",
    [
        ("chat", "Hi", {}, "text"),
        ("template", {"input": "Hi"}, {}, "text"),
        ("summarize", "Bees make honey. " * 40, {"words": 5}, "summary"),
        ("headline", {"topic": "bees"}, {"n": 1}, "headlines"),
        ("translate", "Hello.", {"target_language": "fr"}, "translation"),
        ("classify", "Hi", {"labels": "a,b"}, "scores"),
        ("embed", "Hi", {}, "embedding"),
    ],
)
def test_help_on_generate_names_the_key_each_task_answers_in(task, inputs, options, key):
    engine = FakeEngine()
    engine.enqueue("Bonjour." if task == "translate" else "Bees are busy.")
    assert key in aigc.get_generator(task, engine=engine)(inputs, **options)
    assert f"`{key}`" in aigc.generate.__doc__


def test_generate_given_a_loaded_engine_as_model_says_how_to_run_it():
    with pytest.raises(OptionError, match=r"got FakeEngine; to run a loaded engine, give engine=it: aigc.get_generator\('summarize', engine=...\)"):
        aigc.generate("summarize", "Bees make honey.", model=FakeEngine())


def test_get_generator_resolves_a_named_model_without_loading_it_or_torch(tiny_model_dir):
    import subprocess
    import sys

    code = f"""
import sys
from aigc import get_generator
from aigc.errors import ModelKindError
generator = get_generator("chat", model={str(tiny_model_dir)!r}, device="cpu")
assert generator.model_name == {str(tiny_model_dir)!r} and generator._engine is None
get_generator("chat", model="openai:http://127.0.0.1:9/v1#x")  # a remote model, with no local settings
try:
    get_generator("summarize", model="sd-turbo")
except ModelKindError:
    pass
assert "torch" not in sys.modules, "a check imported torch"
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_an_unknown_language_reads_as_one_message_in_the_library():
    from aigc.generators.translate import TranslateGenerator

    with pytest.raises(BadInputError, match="^target_language: unknown language 'Klingonese'"):
        TranslateGenerator(engine=FakeEngine()).validate({"target_language": "Klingonese"})


def test_the_package_namespace_holds_the_api_not_its_imports():
    import aigc

    assert isinstance(aigc.__version__, str) and not hasattr(aigc, "version") and not hasattr(aigc, "threading")
    assert (__import__("pathlib").Path(aigc.__file__).parent / "py.typed").is_file()  # type hints reach mypy and pyright


def test_several_answers_carry_each_ones_finish_reason():
    from aigc.engine.base import Completion
    from aigc.json_schemas import answer_texts

    engine = FakeEngine()
    engine.enqueue("Red", "Blue")
    result = ChatGenerator(engine=engine)("Name a colour", sampling={"n": 2, "temperature": 0.8})
    assert result["choices"] == ["Red", "Blue"] and result["finish_reasons"] == ["stop", "stop"]
    assert "finish_reasons" not in ChatGenerator(engine=FakeEngine())("Hi")  # one answer: finish_reason alone
    texts, finished = answer_texts([Completion("a", 1, 1, "stop"), Completion("b c", 1, 2, "length")], SamplingParams(max_tokens=2))
    assert finished == {"finish_reason": "stop", "finish_reasons": ["stop", "length"]}


def test_the_template_task_takes_a_text_for_its_input_variable_as_chat_does(tmp_path):
    template = tmp_path / "pun.j2"
    template.write_text("---\nvariables: [{name: word, required: true}, {name: style, default: dry}]\n---\nA {{ style }} pun on {{ word }}")
    for given in ("nasa", {"word": "nasa"}):
        assert aigc.generate("template", given, model="echo", template=str(template))["messages"][-1]["content"] == "A dry pun on nasa"
    assert aigc.stream("template", "nasa", model="echo", template=str(template), variables={"style": "wet"}).text == "nasa"
    assert aigc.generate("chat", "nasa", model="echo", template=str(template))["text"] == "nasa"
    with pytest.raises(BadInputError, match=r"takes a dict of the template's variables, as \{\"input\": \"text\"\}, or the text for its input variable; got int"):
        aigc.generate("template", 5, model="echo", template=str(template))


def test_unload_lets_go_of_a_loaded_model_in_every_dtype_and_the_generators_made_for_it(tiny_model_dir, tmp_path):
    import gc
    import shutil
    import weakref

    from aigc.engine import loading

    model = shutil.copytree(tiny_model_dir, tmp_path / "model")  # a model of this test's own: the shared tiny engine stays loaded
    kept = aigc.load_model(str(tiny_model_dir), device="cpu", dtype="float32")
    engines = [aigc.load_model(str(model), device="cpu", dtype=dtype) for dtype in ("float32", "bfloat16")]
    aigc.generate("chat", "Bees", model=str(model), device="cpu", dtype="float32", sampling={"max_tokens": 2})
    gone = [weakref.ref(engine) for engine in engines]
    weights = weakref.ref(engines[0].model)
    del engines
    assert aigc.unload(str(tmp_path / ".." / tmp_path.name / "model")) == 2  # the same directory by another path
    gc.collect()
    assert [ref() for ref in gone] == [None, None] and weights() is None
    assert not [key for key in loading._loaded if key[1:2] == (str(model),)]  # a remote model's key is (ref,)
    assert aigc.load_model(str(tiny_model_dir), device="cpu", dtype="float32") is kept  # another model stays loaded
    assert aigc.load_model(str(model), device="cpu", dtype="float32") is not None  # and an unloaded one loads again
    assert aigc.unload(str(model)) == 1


def test_unload_finds_a_model_by_any_name_and_a_directory_by_its_path_when_loaded(tiny_model_dir, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    from aigc.engine import loading
    from aigc.engine.models import resolve

    monkeypatch.setattr(loading, "_loaded", {})
    alias = resolve("smollm2-360m", kind=None)
    for name in ("smollm2-360m", "HuggingFaceTB/SmolLM2-360M-Instruct", "hf:HuggingFaceTB/SmolLM2-360M-Instruct"):
        for ref in (alias, dataclasses.replace(alias, name="mine")):  # as loaded: by the alias, or a user's alias of it
            loading._loaded[(ref, None, "cpu", "torch.float32", None, False)] = engine = object()
            assert loading.unload(name) == [engine]
    shutil.copytree(tiny_model_dir, tmp_path / "a" / "model")
    monkeypatch.setattr(loading, "_load", lambda *args: object())
    monkeypatch.chdir(tmp_path / "a")
    engine = loading.load_model("./model", device="cpu")
    monkeypatch.chdir(tmp_path)
    assert loading.unload(str(tmp_path / "a" / "model")) == [engine]  # not ./model resolved against the directory now


class Column:
    """A column of a table, as a pandas Series is to a notebook: iterable, no list or tuple."""

    def __init__(self, values):
        self.values = values

    def __iter__(self):
        return iter(self.values)

    def __len__(self):
        return len(self.values)


def test_many_classify_many_and_embed_take_any_iterable_of_inputs_read_once():
    import numpy

    from aigc.generators.classify import ClassifyGenerator
    from aigc.generators.embed import EmbedGenerator

    engine = FakeEngine()
    chat = aigc.get_generator("chat", model="echo")
    assert chat.many(f"{topic}?" for topic in ("bees", "solar")) == chat.many(["bees?", "solar?"])  # a generator, read once
    texts = ["a good film", "a bad film"]
    classify = ClassifyGenerator(engine=engine)
    labelled = classify.classify_many(texts, labels="good,bad")
    assert classify.classify_many(Column(texts), labels="good,bad") == classify.classify_many(numpy.array(texts), labels="good,bad") == labelled
    vectors = aigc.embed(texts, model="echo")
    assert aigc.embed(numpy.array(texts), model="echo") == aigc.embed(Column(texts), model="echo") == EmbedGenerator(engine=engine).embed_many(iter(texts)) == vectors
    for call, one in ((lambda bad: classify.classify_many(bad, labels="good,bad"), "classify one text"), (EmbedGenerator(engine=engine).embed_many, "embed one text")):
        with pytest.raises(BadInputError, match=f"list of texts.*, got str; {one}"):
            call("one text")
        with pytest.raises(BadInputError, match="list of texts.*, got int$"):
            call(3)
    with pytest.raises(BadInputError, match="many takes a list of inputs, got dict; run one input"):
        HeadlineGenerator(engine=engine).many({"topic": "bees"})
    with pytest.raises(BadInputError, match="input 1: "):
        classify.classify_many(Column(["text", 7]), labels="good,bad")  # a wrong item is still named


def test_many_and_classify_many_tell_progress_of_the_inputs_done():
    told = []
    chat = aigc.get_generator("chat", model="echo", progress=lambda done, total, what: told.append((done, total, what)))
    chat.many([f"question {i}?" for i in range(5)], concurrency=2)
    assert told == [(done, 5, "inputs") for done in range(6)]
    told.clear()
    summarize = aigc.get_generator("summarize", model="echo", progress=lambda done, total, what: told.append((done, total, what)))
    summarize.many(["Bees make honey. " * 400, "Ants dig. " * 400], sampling={"max_tokens": 8})  # an input's own parts are not told: they would mix two counts
    assert told == [(done, 2, "inputs") for done in range(3)]
    told.clear()
    classify = ClassifyGenerator(engine=FakeEngine(), progress=lambda done, total, what: told.append((done, total, what)))
    classify.classify_many([f"text {i}" for i in range(70)], labels="a,b")
    assert told[:4] == [(0, 70, "classifying"), (32, 70, "classifying"), (64, 70, "classifying"), (70, 70, "classifying")]
    assert told[4:] == [(0, 70, "scoring under each label"), (32, 70, "scoring under each label"), (64, 70, "scoring under each label"), (70, 70, "scoring under each label")]  # channel's pass


def test_classify_many_scores_all_texts_in_one_engine_call_when_no_progress_is_told():
    engine = FakeEngine()
    calls = []
    score_many = engine.score_many
    engine.score_many = lambda prompts, *args, **kwargs: calls.append(len(prompts)) or score_many(prompts, *args, **kwargs)
    ClassifyGenerator(engine=engine).classify_many([f"text {i}" for i in range(70)], labels="a,b", calibrate="off")
    assert calls == [70, 2]  # the engine packs them by length, whatever their place in the list; then channel's: a prompt per label, the texts its continuations


def test_help_on_a_generator_and_its_call_lists_the_tasks_options_from_its_options_class():
    import pydoc

    for task in ("headline", "classify", "chat"):
        generator = aigc.get_generator(task)
        shown = pydoc.render_doc(generator, renderer=pydoc.plaintext)
        for name in generator.option_names():
            assert f"{name}=" in shown
        assert "keywords" in pydoc.render_doc(generator.__call__, renderer=pydoc.plaintext)

    @dataclasses.dataclass
    class ShoutOptions:
        loud: int
        words: list = dataclasses.field(default_factory=list)

    class Shout(aigc.Generator):
        """Shouts."""

        name = "shout"
        Options = ShoutOptions

    assert Shout.__doc__ == "Shouts.\n\nOptions (keywords of a call, of `many` and of `imany`): loud, words=[]."


def test_an_article_cut_to_its_lead_is_said_in_a_note_and_a_whole_one_is_not():
    from aigc.generators.base import quiet_notes

    engine = FakeEngine()
    engine.enqueue(*["Bees are back"] * 9)
    gen = HeadlineGenerator(engine=engine)
    with pytest.warns(AigcNote, match=r"^the headlines are written from the article's lead, its first 250 of 400 words \(at most 250 words or 600 tokens are read\)$"):
        gen({"article": "Bees make honey. " * 133 + "Bees"}, n=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        gen({"article": "Bees make honey. " * 83 + "Bees"}, n=1)  # 250 words: all of it is read
        with quiet_notes():  # aigc batch, many, the server: the result is what they pass on
            gen({"article": "Bees make honey. " * 133 + "Bees"}, n=1)


def test_max_tokens_bounds_the_final_summary_and_each_part_takes_what_its_length_needs():
    from aigc.generators.summarize import SummarizeOptions, summary_tokens

    engine = FakeEngine()
    engine.enqueue(*[f"part {i} summary." for i in range(10)], "Final summary.")
    result = SummarizeGenerator(engine=engine)("\n\n".join(f"Paragraph {i}. " + "word " * 90 for i in range(10)), chunk_tokens=100, sampling={"max_tokens": 30, "repetition_penalty": 1.3})
    budgets = [params.max_tokens for _, params in engine.calls]
    assert result["parts"] == 10 and result["map_reduce_rounds"] == 1 and len(budgets) == 4
    assert budgets[-1] == 30 and set(budgets[:-1]) == {summary_tokens(SummarizeOptions().part_words)}
    assert {params.repetition_penalty for _, params in engine.calls} == {1.3}  # the other settings hold for every call


@pytest.mark.parametrize(
    "text, unit, asked",
    [
        ("人工智能正在改变内容创作的方式。许多公司开始使用大型语言模型来撰写新闻稿。" * 8, "characters", True),  # counted, and trimmed, by character
        ("東京で花見をします。桜が好きです。今年の春はとても暖かいです。" * 8, "characters", True),
        ("Пчёлы на крыше: пять секретов городского мёда. " * 20, "words", True),
        (LONG_TEXT, "words", False),  # the embedded model, asked, writes about languages: English prompts stay as they were
        ("Bees in 東京 make honey on city rooftops every summer. " * 20, "words", False),  # a few CJK words in an English text
    ],
)
def test_the_summary_prompt_asks_for_the_texts_language_and_the_unit_its_length_is_counted_in(text, unit, asked):
    engine = FakeEngine()
    for options in ({}, {"format": "bullets"}, {"chunk_tokens": 64}):
        engine.calls.clear()
        engine.enqueue(*["短。"] * 40)
        SummarizeGenerator(engine=engine)(text, words=30, **options)
        prompts = ["".join(m["content"] for m in prompt) for prompts, _ in engine.calls for prompt in prompts]
        assert prompts and all(f" {unit}" in prompt and ("Write it in the same language as the text." in prompt) == asked for prompt in prompts)
        assert not any(f" {'words' if unit == 'characters' else 'characters'}" in prompt.split("Text:")[0] for prompt in prompts)


@pytest.mark.parametrize("inputs, asked", [({"topic": "城市屋顶养蜂"}, "topic"), ({"article": "城市屋顶养蜂。" * 20}, "article"), ({"topic": "rooftop bees"}, None), ({"article": "Bees in 東京. " * 20}, None)])
def test_a_headline_prompt_asks_for_the_language_of_a_topic_or_article_not_in_latin_script(inputs, asked):
    generator = HeadlineGenerator(engine=FakeEngine())
    prompt = generator.preprocess(inputs, generator.validate({})).messages[-1]["content"]
    assert ("in the language of the" in prompt) == bool(asked) and (not asked or f"in the language of the {asked}." in prompt)


def test_a_task_option_given_that_its_override_template_never_reads_is_a_warning(tmp_path):
    from aigc.generators.headline import HeadlineOptions
    from aigc.generators.summarize import SummarizeOptions

    lean = tmp_path / "lean.j2"  # reads the input alone: no style, max_words, words or format
    lean.write_text("---\nvariables:\n  - {name: topic, default: ''}\n  - {name: article, default: ''}\n  - {name: text, default: ''}\n---\n{{ topic }}{{ article }}{{ text }}\n")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        HeadlineOptions(template=str(lean))
        SummarizeOptions(template=str(lean))  # their defaults: nothing said
        HeadlineOptions(template=str(lean), max_words=3, style="question")
        SummarizeOptions(template=str(lean), words=5, format="bullets")
        SummarizeOptions(template=str(lean), length="short")
    said = [str(w.message) for w in caught if issubclass(w.category, AigcWarning)]
    assert [re.search(r"never reads \{\{ (\w+) \}\}, so `\w+` does not tell the model ([^;]+);", s).groups() for s in said] == [
        ("style", "style=question"), ("max_words", "max_words=3"), ("words", "words=5"), ("format", "format=bullets"), ("words", "length=short"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        HeadlineOptions(max_words=3, style="question")  # the built-in reads them
        SummarizeOptions(words=5, format="bullets")


@pytest.mark.parametrize(
    "text, language, name, unit",
    [
        ("Bienen machen Honig auf den Dächern der Stadt. Im Sommer fliegen sie weit. " * 12, "English", "English", "words"),  # Latin script: no language was asked for before
        ("Пчёлы на крыше: пять секретов городского мёда. " * 20, "fr", "French", "words"),  # the language asked for wins over the text's
        (LONG_TEXT, "日本語", "Japanese", "characters"),  # counted, and trimmed, as Japanese is
    ],
)
def test_a_summary_language_asked_for_is_in_every_prompt_of_every_stage_whatever_the_texts(text, language, name, unit):
    engine = FakeEngine()
    for options in ({}, {"format": "bullets"}, {"chunk_tokens": 64}):
        engine.calls.clear()
        engine.enqueue(*["Short."] * 40)
        result = SummarizeGenerator(engine=engine)(text, words=30, language=language, **options)
        prompts = ["".join(m["content"] for m in prompt) for prompts, _ in engine.calls for prompt in prompts]
        assert prompts and all(f"Write it in {name}." in prompt and "same language" not in prompt and f" {unit}" in prompt.split("Text:")[0] for prompt in prompts)
        assert result["map_reduce_rounds"] == (1 if "chunk_tokens" in options else 0)  # parts, then the final summary: each asked for it


def test_a_short_text_is_summarized_not_given_back_as_it_is_when_another_language_is_asked_for():
    engine = FakeEngine()
    engine.enqueue("Les abeilles font du miel.", "Bees make honey.")
    generator = SummarizeGenerator(engine=engine)
    assert generator("Bees make honey.", language="fr") == {"summary": "Les abeilles font du miel.", "words": 5, "map_reduce_rounds": 0, "parts": 1, "cut_off": False, "unchanged": False}
    with pytest.warns(AigcWarning, match="given back as it is"):  # none asked for: given back, as before
        assert generator("Bees make honey.")["unchanged"] and len(engine.calls) == 1


@pytest.mark.parametrize("generator, inputs", [(SummarizeGenerator, "Bees make honey."), (HeadlineGenerator, {"topic": "bees"})])
def test_an_unknown_language_is_an_option_error_that_says_how_to_spell_one(generator, inputs):
    for value, hint in (("Klingon", ""), ("Germn", "did you mean German (de)? ")):
        with pytest.raises(OptionError, match=rf"^language: unknown language '{value}'; {re.escape(hint)}give a name or ISO code such as French, fr, zh or pt-BR$") as raised:
            generator(engine=FakeEngine())(inputs, language=value)
        assert raised.value.option == "language"


def test_a_language_is_recorded_by_its_code_and_only_when_given_so_earlier_batch_outputs_resume():
    from aigc.generators.headline import HeadlineOptions
    from aigc.generators.summarize import SummarizeOptions

    for options in (SummarizeOptions, HeadlineOptions):
        assert "language" not in options().settings()
        assert options(language="German").settings()["language"] == "de" and options(language="zh_CN").language == "zh-CN"
        assert options(language="zh-Hans").language == "zh-Hans"  # a BCP-47 tag as given, as translate records one


def test_a_template_of_yours_without_language_works_until_a_language_is_asked_for(tmp_path):
    older = tmp_path / "older.j2"  # made before language: same_language still filled, an error with a language (it would be dropped)
    older.write_text("---\ngenerator: summarize\n---\nSummarize in {{ words }} {{ unit }}{{ ', in its language' if same_language }}: {{ text }}\n")
    engine = FakeEngine()
    engine.enqueue("短。")
    SummarizeGenerator(engine=engine)("人工智能正在改变内容创作的方式。" * 8, template=str(older), chunk_template=str(older))
    assert ", in its language:" in engine.calls[0][0][0][-1]["content"]
    for flag in ("template", "chunk_template"):
        with pytest.raises(OptionError, match=r"never reads language \(the language to write the summary in\)") as raised:
            SummarizeGenerator(engine=engine)("Bees.", language="fr", **{flag: str(older)})
        assert raised.value.option == flag
    headline = tmp_path / "headline.j2"
    headline.write_text("---\ngenerator: headline\n---\nA headline about {{ topic }}{{ article }}{{ ' in its language' if same_language }}.\n")
    engine.enqueue("城市蜜蜂")
    assert HeadlineGenerator(engine=engine)({"topic": "城市屋顶养蜂"}, n=1, template=str(headline))["headlines"] == ["城市蜜蜂"]
    assert " in its language." in engine.calls[-1][0][0][-1]["content"]
    with pytest.raises(OptionError, match=r"never reads language \(the language to write the headlines in\)"):
        HeadlineGenerator(engine=engine)({"topic": "bees"}, n=1, template=str(headline), language="fr")


@pytest.mark.parametrize(
    "inputs, language, asked",
    [
        ({"topic": "城市屋顶养蜂"}, "English", "Use at most 12 words, in English."),  # wins over the topic's own
        ({"topic": "城市屋顶养蜂"}, "en", "Use at most 12 words, in English."),
        ({"article": "Bienen machen Honig. " * 20}, "English", "in at most 12 words, in English."),  # Latin script: none was asked for before
        ({"topic": "bees"}, "日本語", "Use at most 12 words, in Japanese."),
        ({"article": "Bees make honey. " * 20}, "ja", "in at most 12 words, in Japanese."),
    ],
)
def test_a_headline_language_asked_for_goes_into_the_prompt_and_wins_over_the_inputs(inputs, language, asked):
    generator = HeadlineGenerator(engine=FakeEngine())
    prompt = generator.preprocess(inputs, generator.validate({"language": language})).messages[-1]["content"]
    assert asked in prompt and "in the language of the" not in prompt


@pytest.mark.parametrize("answer", ["## Summary\nBees thrive in cities.\nSome ecologists worry.", "**Summary:**\n\nBees thrive in cities. Some ecologists worry.\n---", "# Urban bees\nBees thrive in cities. Some ecologists worry."])
def test_a_paragraph_summary_leaves_out_headings_and_labels_rather_than_gluing_them_to_its_first_sentence(answer):
    engine = FakeEngine()
    engine.enqueue(answer)
    assert SummarizeGenerator(engine=engine)(LONG_TEXT)["summary"] == "Bees thrive in cities. Some ecologists worry."
