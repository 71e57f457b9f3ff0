"""The salient-detail guard's vocabulary: canonical word → other surface forms (the canonical itself also matches),
by category. Multi-word forms are matched before single words, so "golden hour" is a time of day, not a colour."""
from __future__ import annotations

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
IRREGULAR_PLURALS = frozenset({"people", "humans", "men", "gentlemen", "women", "children", "geese",
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
NEGATION_SKIP = frozenset({"a", "an", "the", "any", "some", "single", "visible"})


# Well-known cities beyond the selfie catalogue's
WORLD_CITIES = ("venice", "florence", "milan", "berlin", "munich", "vienna", "madrid", "lisbon", "dublin", "edinburgh",
                "copenhagen", "stockholm", "oslo", "helsinki", "moscow", "budapest", "warsaw", "brussels", "zurich",
                "geneva", "los angeles", "las vegas", "miami", "boston", "seattle", "toronto", "montreal", "havana",
                "shanghai", "osaka", "hanoi", "delhi", "jerusalem", "petra", "lima", "santiago", "melbourne")
