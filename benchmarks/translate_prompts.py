"""How close `aigc translate` gets to reference translations of short English sentences, for the
prompt formats it offers: `python -m benchmarks.translate_prompts [-m MODEL] [--show]`.

chrF (character n-gram F-score, 0-100) against one reference each, into French, Spanish and
German; copying the English source unchanged scores the `copy` line. Greedy decoding, so a run
gives the same figures on the same machine and dtype.
"""

import argparse
import time
from collections import Counter

# (English, French, Spanish, German); none of them are among the example turns the prompt uses
SENTENCES = [
    ("The cat is on the table.", "Le chat est sur la table.", "El gato está en la mesa.", "Die Katze ist auf dem Tisch."),
    ("I like to read books in the evening.", "J'aime lire des livres le soir.", "Me gusta leer libros por la noche.", "Ich lese abends gern Bücher."),
    ("The weather is nice today.", "Il fait beau aujourd'hui.", "Hace buen tiempo hoy.", "Das Wetter ist heute schön."),
    ("Where is the train station?", "Où est la gare ?", "¿Dónde está la estación de tren?", "Wo ist der Bahnhof?"),
    ("My brother works in a hospital.", "Mon frère travaille dans un hôpital.", "Mi hermano trabaja en un hospital.", "Mein Bruder arbeitet in einem Krankenhaus."),
    ("We are going to the beach tomorrow.", "Nous allons à la plage demain.", "Mañana vamos a la playa.", "Wir gehen morgen an den Strand."),
    ("The children are playing in the garden.", "Les enfants jouent dans le jardin.", "Los niños juegan en el jardín.", "Die Kinder spielen im Garten."),
    ("Thank you very much for your help.", "Merci beaucoup pour votre aide.", "Muchas gracias por tu ayuda.", "Vielen Dank für Ihre Hilfe."),
]
LANGUAGES = ("fr", "es", "de")
VARIANTS = {
    "by sentence, example turns (default)": {},
    "by sentence, instructions only": {"examples": False},
    "two sentences a prompt, example turns": {"by_sentence": False},
}


def chrf(hypothesis: str, reference: str, order: int = 4, beta: float = 2.0) -> float:
    """Character n-gram F-score (n = 1..4, recall weighted by beta), 0-100, case-insensitive."""
    precisions, recalls = [], []
    for n in range(1, order + 1):
        h = Counter(hypothesis.lower()[i : i + n] for i in range(len(hypothesis) - n + 1))
        r = Counter(reference.lower()[i : i + n] for i in range(len(reference) - n + 1))
        if h and r:
            match = sum((h & r).values())
            precisions.append(match / sum(h.values()))
            recalls.append(match / sum(r.values()))
    if not precisions:
        return 0.0
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    return 0.0 if p + r == 0 else 100 * (1 + beta**2) * p * r / (beta**2 * p + r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", default=None)
    parser.add_argument("--show", action="store_true", help="print every translation")
    args = parser.parse_args()

    import aigc

    generator = aigc.get_generator("translate", model=args.model)
    pairs = [(SENTENCES[i], SENTENCES[i + 1]) for i in range(0, len(SENTENCES), 2)]
    document = "\n\n".join(f"{a[0]} {b[0]}" for a, b in pairs)  # four paragraphs of two sentences
    copy = [chrf(row[0], row[1 + k]) for row in SENTENCES for k in range(len(LANGUAGES))]
    print(f"{'copy the source':40} chrF {sum(copy) / len(copy):5.1f}")
    for name, options in VARIANTS.items():
        scores: dict[str, float] = {}
        started = time.perf_counter()
        for k, language in enumerate(LANGUAGES):
            result = generator(document, target_language=language, source_language="en", **options)
            paragraphs = result["translation"].split("\n\n")
            references = [f"{a[1 + k]} {b[1 + k]}" for a, b in pairs]
            scores[language] = sum(chrf(h, r) for h, r in zip(paragraphs, references)) / len(pairs)
            if args.show:
                for (a, b), h in zip(pairs, paragraphs):
                    print(f"  [{language}] {a[0]} {b[0]} -> {h}")
        mean = sum(scores.values()) / len(scores)
        per = " ".join(f"{lang} {score:5.1f}" for lang, score in scores.items())
        print(f"{name:40} chrF {mean:5.1f}  ({per})  {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
