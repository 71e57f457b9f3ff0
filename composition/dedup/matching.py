"""Near-duplicate prompt matching, pure (no Redis, no Ray).

Two prompts are duplicates when their normalised text is equal, or when their embedding cosine reaches
`DEFAULT_THRESHOLD` and `salient_conflict` finds no detail (colour, count, subject, ...) that differs.
Candidates for the cosine check are a scope's nearest prompts in its vector set (composition/store/prompts.py).
Tuned on tests/data/prompt_pairs.jsonl with all-MiniLM-L6-v2: `python -m bench.dedup`.
"""
from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from types import MappingProxyType

DEFAULT_THRESHOLD = 0.80

_APOSTROPHES = frozenset("'’‘ʼ`´")


def normalize_prompt(text: str) -> str:
    """NFKC, casefold, apostrophes dropped ("don't" → "dont"), other punctuation and symbols to spaces.

    Letters (any script, CJK included), combining marks and digits are kept; whitespace is collapsed.
    """
    text = unicodedata.normalize("NFKC", text).casefold().replace("&", " and ")
    kept = (ch if unicodedata.category(ch)[0] in "LMN" else " " for ch in text if ch not in _APOSTROPHES)
    return " ".join("".join(kept).split())


# Lexicons: canonical → other surface forms (the canonical itself also matches). Multi-word forms are
# matched before single words, so "golden hour" is a time of day, not a colour.
COLOURS: dict[str, tuple[str, ...]] = {
    "red": ("crimson", "scarlet", "maroon", "ruby", "burgundy", "redhead"),
    "orange": ("ginger", "tangerine"),
    "yellow": ("mustard",),
    "green": ("emerald",),
    "blue": ("navy", "azure", "cobalt", "sapphire"),
    "teal": ("turquoise", "cyan", "aqua"),
    "purple": ("violet", "lavender", "lilac"),
    "pink": ("magenta", "fuchsia"),
    "brown": ("brunette",),
    "beige": ("ivory", "khaki", "tan"),
    "black": ("ebony", "jet black"),
    "white": ("snow white",),
    "grey": ("gray", "charcoal grey", "charcoal gray", "silver grey", "silver gray"),
    "gold": ("golden",),
    "silver": ("silvery",),
    "blonde": ("blond",),
    "monochrome": ("black and white", "grayscale", "greyscale"),
}
SUBJECTS: dict[str, tuple[str, ...]] = {
    "person": ("people", "someone", "human", "humans"),
    "man": ("men", "guy", "gentleman", "gentlemen"),
    "woman": ("women", "lady"),
    "boy": (), "girl": (), "baby": ("infant",),
    "child": ("children", "kid", "toddler"),
    "king": (), "queen": (), "prince": (), "princess": (), "knight": (), "wizard": (), "witch": (),
    "pirate": (), "soldier": (), "samurai": (), "ninja": (), "astronaut": (), "robot": ("android",),
    "cat": ("kitty", "housecat"), "kitten": (), "dog": ("doggy", "hound"), "puppy": (),
    "horse": ("horseback", "stallion", "mare"), "pony": (), "donkey": (), "camel": (), "cow": ("cattle",),
    "sheep": ("lamb",), "pig": (), "goat": (), "chicken": ("hen", "rooster"), "duck": (), "goose": ("geese",),
    "bird": (), "owl": (), "eagle": (), "parrot": (), "penguin": (), "swan": (), "flamingo": (),
    "fox": (), "wolf": ("wolves",), "bear": (), "polar bear": (), "teddy bear": (), "panda": (),
    "lion": (), "tiger": (), "leopard": (), "cheetah": (), "elephant": (), "giraffe": (), "zebra": (),
    "monkey": (), "gorilla": (), "deer": (), "rabbit": ("bunny", "hare"), "squirrel": (),
    "mouse": ("mice",), "rat": (), "frog": (), "turtle": ("tortoise",), "snake": (), "fish": (),
    "shark": (), "whale": (), "dolphin": (), "octopus": (), "butterfly": (), "bee": (), "spider": (),
    "dragon": (), "unicorn": (), "dinosaur": (),
    "car": ("automobile",), "truck": ("lorry",), "bus": (), "bicycle": ("bike",),
    "motorcycle": ("motorbike",), "boat": ("sailboat", "sailing boat", "rowboat"), "ship": (),
    "canoe": (), "kayak": (), "train": (), "tram": (), "airplane": ("aeroplane", "plane"),
    "helicopter": (), "hot dog": (),
    "house": (), "cottage": (), "cabin": ("hut",), "castle": (), "palace": (), "church": ("chapel",),
    "temple": (), "tower": (), "lighthouse": (), "bridge": (), "skyscraper": (), "barn": (), "windmill": (),
}
_IRREGULAR_PLURALS = frozenset({"people", "humans", "men", "gentlemen", "women", "children", "geese",
                                "wolves", "mice", "cattle"})
MATERIALS: dict[str, tuple[str, ...]] = {
    "wood": ("wooden", "timber"),
    "metal": ("metallic", "steel", "stainless steel", "iron", "wrought iron", "aluminium", "aluminum",
              "chrome", "tin"),
    "bronze": (), "copper": (), "brass": (),
    "glass": (), "crystal": (), "ice": (),
    "stone": ("granite",), "marble": (), "concrete": ("cement",), "brick": (),
    "ceramic": ("porcelain",), "clay": ("terracotta",),
    "plastic": (), "paper": (), "cardboard": (), "rubber": (),
    "leather": (), "denim": (), "silk": (), "wool": ("woolen", "woollen"), "cotton": (), "velvet": (),
}
TIMES_OF_DAY: dict[str, tuple[str, ...]] = {
    "dawn": ("sunrise", "daybreak"),
    "morning": (),
    "noon": ("midday", "noontime"),
    "afternoon": (),
    "golden hour": (),
    "sunset": ("sundown",),
    "evening": ("dusk", "twilight", "blue hour"),
    "night": ("nighttime", "night time", "midnight", "tonight"),
    "daytime": ("daylight",),
}
MEDIA: dict[str, tuple[str, ...]] = {
    "photo": ("photograph", "photography", "photographic", "photorealistic", "photo realistic",
              "hyperrealistic", "hyper realistic", "dslr", "polaroid", "snapshot"),
    "oil painting": ("oil on canvas", "oils"),
    "watercolor": ("watercolour", "watercolor painting", "watercolour painting", "water color"),
    "acrylic": ("acrylic painting",),
    "painting": (),
    "pixel art": ("pixelart", "pixelated", "8 bit", "16 bit"),
    "3d render": ("3d", "3d rendering", "3d rendered", "3d model", "cgi", "octane render", "unreal engine"),
    "low poly": (),
    "pencil": ("pencil sketch", "pencil drawing"),
    "charcoal": ("charcoal drawing", "charcoal sketch"),
    "ink": ("ink drawing", "pen and ink"),
    "drawing": ("sketch", "doodle"),
    "anime": ("manga",),
    "cartoon": ("cartoonish",),
    "comic": ("comic book",),
    "illustration": ("illustrated",),
    "digital art": ("digital painting", "concept art"),
    "vector art": ("vector illustration",),
    "woodblock print": ("woodcut", "ukiyo e"),
    "stained glass": (),
    "sculpture": ("statue",),
}
WEATHER: dict[str, tuple[str, ...]] = {
    "rain": ("rainy", "raining", "rainfall", "drizzle", "downpour"),
    "snow": ("snowy", "snowing", "snowfall", "snow covered", "snow capped", "blizzard"),
    "fog": ("foggy", "mist", "misty", "haze", "hazy"),
    "storm": ("stormy", "thunderstorm", "thunder", "lightning", "rainstorm", "hurricane"),
    "sunny": ("sunshine", "clear sky", "clear skies", "cloudless"),
    "cloudy": ("cloud", "clouds", "overcast"),
    "wind": ("windy",),
}
SEASONS: dict[str, tuple[str, ...]] = {
    "spring": ("springtime",),
    "summer": ("summertime", "summery"),
    "autumn": ("fall", "autumnal"),
    "winter": ("wintertime", "wintry", "wintery"),
}
PLACES: dict[str, tuple[str, ...]] = {
    "market": ("marketplace", "bazaar", "market square"), "library": (), "deck": (), "cockpit": (), "galley": (),
    "harbour": ("harbor", "port", "docks", "dock", "pier", "quay", "marina"), "beach": ("shore", "seashore", "seaside"),
    "sea": ("ocean",), "forest": ("woods", "woodland"), "jungle": ("rainforest",), "desert": (),
    "mountain": ("mountains", "mountaintop", "peak"), "hill": ("hills", "hillside"), "valley": (),
    "river": ("riverbank", "stream"), "lake": (), "waterfall": (), "cave": ("cavern",), "island": (),
    "field": ("meadow", "fields"), "farm": ("farmyard",), "garden": (), "park": (),
    "street": ("road", "avenue"), "alley": ("alleyway",), "city": ("town", "downtown", "cityscape"), "village": (),
    "kitchen": (), "bedroom": (), "living room": (), "bathroom": (), "office": (), "classroom": ("school",),
    "cafe": ("café", "coffee shop"), "restaurant": ("diner",), "bar": ("pub", "tavern"), "museum": ("gallery",),
    "station": ("train station", "railway station"), "airport": (), "hospital": (), "stage": (), "stadium": (),
    "rooftop": ("roof",), "balcony": (), "outer space": ("space",), "underwater": (), "attic": (), "cellar": (),
}
ACTIONS: dict[str, tuple[str, ...]] = {
    "reading": ("reads",), "writing": ("writes",), "climbing": ("climbs",), "running": ("runs",),
    "walking": ("walks", "strolling"), "swimming": ("swims",), "dancing": ("dances",), "singing": ("sings",),
    "eating": ("eats",), "drinking": ("drinks", "sipping"), "sleeping": ("sleeps", "asleep", "napping"),
    "sitting": ("sits", "seated"), "standing": ("stands",), "lying": ("lies", "lying down"), "jumping": ("jumps",),
    "flying": ("flies",), "riding": ("rides",), "fishing": (), "sailing": ("sails",), "rowing": ("rows",),
    "steering": ("steers", "at the helm"), "cooking": ("cooks",), "playing": ("plays",), "fighting": ("fights",),
    "laughing": ("laughs",), "crying": ("cries", "weeping"), "smiling": ("smiles",), "waving": ("waves",),
    "holding": ("holds", "carrying", "carries"), "working": ("works",), "shopping": ("shops",),
    "praying": ("prays",), "hugging": ("hugs",), "kissing": ("kisses",), "talking": ("talks", "chatting"),
    "surfing": (), "skiing": (), "skating": (), "hiking": (), "cycling": (), "driving": ("drives",),
    "studying": (), "meditating": (), "kneeling": ("kneels",), "selfie": ("taking a selfie",),
}
OBJECTS: dict[str, tuple[str, ...]] = {
    "lantern": (), "lamp": (), "candle": ("candles",), "sword": (), "spear": (), "shield": (), "axe": (), "knife": (),
    "gun": ("pistol", "rifle"), "book": ("books", "novel"), "map": ("maps", "chart"), "letter": ("letters",),
    "umbrella": (), "guitar": (), "violin": (), "piano": (), "drum": ("drums",), "flute": (),
    "flower": ("flowers", "bouquet"), "cup": ("mug",), "coffee": (), "tea": (), "wine": (), "bottle": (),
    "phone": ("smartphone",), "camera": (), "telescope": ("spyglass",), "compass": (), "clock": (),
    "mirror": (), "hat": (), "crown": (), "mask": (), "scarf": (), "glasses": ("spectacles", "sunglasses"),
    "bag": ("backpack", "handbag"), "basket": (), "anchor": (), "rope": (), "net": (), "flag": (), "mast": (),
    "balloon": ("balloons",), "kite": (), "ball": (), "bread": (), "cake": (), "apple": ("apples",),
    "ice cream": (), "pizza": (), "newspaper": (), "laptop": ("computer",), "key": ("keys",),
}
NUMBER_WORDS: dict[str, int] = {
    **{word: n for n, word in enumerate(("zero one two three four five six seven eight nine ten eleven "
                                         "twelve thirteen fourteen fifteen sixteen seventeen eighteen "
                                         "nineteen twenty").split())},
    "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "thousand": 1000, "dozen": 12,
    "single": 1, "lone": 1, "solitary": 1, "pair": 2, "couple": 2, "twin": 2, "twins": 2, "trio": 3,
}
QUANTIFIERS = frozenset({"many", "several", "multiple", "numerous", "countless", "few"})
NEGATORS = frozenset({"no", "without", "not", "never", "dont", "doesnt", "isnt", "nor"})
_NEGATION_SKIP = frozenset({"a", "an", "the", "any", "some", "single", "visible"})


def _landmarks() -> dict[str, tuple[str, ...]]:
    """The catalogue's landmark names ("Spanish Steps", "Colosseum"): places of their own."""
    from composition.catalogue import load_catalogue

    return {normalize_prompt(landmark.name): () for city in load_catalogue().cities.values()
            for landmark in city.landmarks}


# Well-known cities beyond the selfie catalogue's
WORLD_CITIES = ("venice", "florence", "milan", "berlin", "munich", "vienna", "madrid", "lisbon", "dublin", "edinburgh",
                "copenhagen", "stockholm", "oslo", "helsinki", "moscow", "budapest", "warsaw", "brussels", "zurich",
                "geneva", "los angeles", "las vegas", "miami", "boston", "seattle", "toronto", "montreal", "havana",
                "shanghai", "osaka", "hanoi", "delhi", "jerusalem", "petra", "lima", "santiago", "melbourne")


def _cities() -> dict[str, tuple[str, ...]]:
    """Cities and countries (the catalogue's, "Rome", "Japan", and `WORLD_CITIES`): places, so "in Paris" never
    merges with "in Tokyo"."""
    from composition.catalogue import load_catalogue

    cities = load_catalogue().cities.values()
    return {normalize_prompt(name): () for name in (*(n for c in cities for n in (c.name, c.country)), *WORLD_CITIES)}


CATEGORIES = ("colour", "count", "subject", "material", "time_of_day", "negation", "medium", "weather", "season",
              "landmark", "place", "action", "object")
# Often implied rather than said ("an owl on a branch" is sitting, "a samurai with a sword" holds it): these
# conflict only when both prompts name one.
IMPLICIT = frozenset({"action", "object"})
_LEXICONS = {"colour": COLOURS, "subject": SUBJECTS, "material": MATERIALS, "time_of_day": TIMES_OF_DAY,
             "medium": MEDIA, "weather": WEATHER, "season": SEASONS, "landmark": _landmarks(),
             "place": PLACES | _cities(),
             "action": ACTIONS, "object": OBJECTS}
_PHRASES: dict[tuple[str, ...], tuple[str, str]] = {
    tuple(form.split()): (category, canonical)
    for category, lexicon in _LEXICONS.items()
    for canonical, forms in lexicon.items()
    for form in (canonical, *forms)
}
_LONGEST = max(map(len, _PHRASES))


def _stems(word: str) -> list[str]:
    """Candidate singulars of a regular plural ("puppies" → "puppy", "foxes" → "fox", "cats" → "cat")."""
    if not word.endswith("s") or word.endswith("ss"):
        return []
    return [word[:-1]] + [word[:-2]] * word.endswith("es") + [word[:-3] + "y"] * word.endswith("ies")


def _match(tokens: list[str], start: int) -> tuple[int, str, str, bool] | None:
    """Longest lexicon phrase at `start`: (length, category, canonical, is a plural subject)."""
    for length in range(min(_LONGEST, len(tokens) - start), 0, -1):
        words = tuple(tokens[start:start + length])
        if words in _PHRASES:
            return length, *_PHRASES[words], words[-1] in _IRREGULAR_PLURALS
        for stem in _stems(words[-1]):
            hit = _PHRASES.get((*words[:-1], stem))
            if hit and hit[0] == "subject":
                return length, *hit, True
    return None


def _lemma(word: str) -> str:
    """Subject canonical, else the word without a plural "s", so "no people" = "without humans"."""
    hit = _match([word], 0)
    if hit and hit[1] == "subject":
        return hit[2]
    return word[:-1] if word.endswith("s") and not word.endswith("ss") else word


@lru_cache(maxsize=4096)
def salient_details(prompt: str) -> Mapping[str, frozenset]:
    """Canonical details per category (read-only). English vocabulary; other scripts yield empty sets.

    count is the set of numbers mentioned ("a pair" → 2, "single" → 1; "a"/"an" are not numbers); without
    one it is {"many"} for a plural subject or a quantifier ("dogs", "several"), else {1}, so "a dog" vs
    "two dogs" vs "dogs" all differ. negation holds the word each negator applies to ("without a hat",
    "with no hats" → {"hat"}).
    """
    tokens = normalize_prompt(prompt).split()
    found: dict[str, set] = {category: set() for category in CATEGORIES}
    plural, start = False, 0
    while start < len(tokens):
        token = tokens[start]
        if token in NEGATORS:
            target = next((word for word in tokens[start + 1:] if word not in _NEGATION_SKIP), None)
            if target:
                found["negation"].add(_lemma(target))
        hit = _match(tokens, start)
        if hit:
            length, category, canonical, is_plural = hit
            found[category].add(canonical)
            plural |= is_plural
            start += length
            continue
        if token.isdecimal():
            found["count"].add(int(token))
        elif token in NUMBER_WORDS:
            found["count"].add(NUMBER_WORDS[token])
        plural |= token in QUANTIFIERS
        start += 1
    found["count"] = found["count"] or {"many" if plural else 1}
    return MappingProxyType({category: frozenset(values) for category, values in found.items()})


def readable(prompt: str) -> bool:
    """Whether the guard can judge the prompt: its vocabulary (and the embedder) is English, so letters of another
    script (雨中的红色老爷车) make it unreadable."""
    return all(not char.isalpha() or unicodedata.name(char, "").startswith("LATIN") for char in prompt)


def salient_conflict(a: str, b: str) -> str | None:
    """"script" when either prompt is not `readable`, else the first category in `CATEGORIES` whose canonical
    details differ between the prompts, else None.

    A detail named on one side only conflicts too ("red car" vs "car", "street" vs "street at night"):
    the unspecific prompt's image may show any colour or time, so reusing it is unsafe; actions and objects
    (`IMPLICIT`) conflict only when both sides name one.
    """
    if not (readable(a) and readable(b)):
        return "script"
    left, right = salient_details(a), salient_details(b)
    return next((category for category in CATEGORIES if left[category] != right[category]
                 and (category not in IMPLICIT or (left[category] and right[category]))), None)


def is_duplicate(a: str, b: str, cosine: float, threshold: float = DEFAULT_THRESHOLD) -> bool:
    """Equal normalised text, or cosine >= threshold with no salient conflict."""
    if normalize_prompt(a) == normalize_prompt(b):
        return True
    return bool(cosine >= threshold) and salient_conflict(a, b) is None
