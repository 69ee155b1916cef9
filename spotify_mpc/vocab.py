"""Word lists the synthetic generator draws names and titles from.

Themes stand for the genres and moods that make real playlists coherent: each theme owns
artists (hence tracks) and a few title phrasings, so a title like "country" or "workout"
predicts content the way it does in the real MPD.
"""

from __future__ import annotations

# (theme, title phrasings). The first phrasing is the most common one.
THEMES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("country", ("country", "Country", "country music", "COUNTRY", "country jams", "Country Vibes")),
    ("rap", ("rap", "Rap", "RAP", "rap music", "rap caviar", "Rap!")),
    ("chill", ("chill", "Chill", "chill vibes", "CHILL", "chillin", "Chill Mix")),
    ("workout", ("workout", "Workout", "gym", "Gym", "workout mix", "lifting")),
    ("christmas", ("christmas", "Christmas", "Christmas Music", "xmas", "Christmas!!", "holiday")),
    ("rock", ("rock", "Rock", "classic rock", "Classic Rock", "rock n roll", "ROCK")),
    ("edm", ("edm", "EDM", "house", "electronic", "EDM mix", "rave")),
    ("indie", ("indie", "Indie", "indie folk", "Indie Vibes", "alt", "indie rock")),
    ("oldies", ("oldies", "Oldies", "throwback", "old school", "80s", "90s")),
    ("worship", ("worship", "Worship", "christian", "Christian", "church", "praise")),
    ("sleep", ("sleep", "Sleep", "sleepy", "relax", "calm", "bedtime")),
    ("party", ("party", "Party", "party mix", "PARTY", "pregame", "turn up")),
    ("latin", ("latin", "Latin", "reggaeton", "Reggaeton", "spanish", "musica")),
    ("jazz", ("jazz", "Jazz", "smooth jazz", "jazz night", "bossa", "swing")),
    ("classical", ("classical", "Classical", "piano", "study piano", "orchestra", "focus")),
    ("metal", ("metal", "Metal", "heavy metal", "METAL", "metalcore", "hardcore")),
    ("rnb", ("r&b", "R&B", "rnb", "slow jams", "soul", "RnB")),
    ("pop", ("pop", "Pop", "pop hits", "top hits", "Top 40", "radio")),
    ("punk", ("punk", "Punk", "pop punk", "emo", "Emo", "punk rock")),
    ("folk", ("folk", "Folk", "acoustic", "Acoustic", "singer songwriter", "coffee shop")),
    ("summer", ("summer", "Summer", "summer 2017", "beach", "Summer Vibes", "sunshine")),
    ("sad", ("sad", "Sad", "sad songs", "feels", "heartbreak", "crying")),
    ("disney", ("disney", "Disney", "musicals", "broadway", "Broadway", "kids")),
    ("roadtrip", ("road trip", "Road Trip", "roadtrip", "drive", "driving", "car")),
    ("reggae", ("reggae", "Reggae", "island", "dancehall", "roots", "irie")),
    ("blues", ("blues", "Blues", "delta blues", "blues rock", "soulful", "juke")),
    ("kpop", ("kpop", "KPOP", "k-pop", "Kpop", "korean", "bts")),
    ("trap", ("trap", "Trap", "trap music", "bangers", "lit", "LIT")),
    ("motown", ("motown", "Motown", "60s", "funk", "Funk", "groove")),
    ("study", ("study", "Study", "studying", "homework", "concentration", "lofi")),
    ("love", ("love songs", "Love Songs", "romance", "wedding", "first dance", "date night")),
    ("grunge", ("grunge", "Grunge", "alternative", "Alternative", "90s rock", "alt rock")),
    ("dubstep", ("dubstep", "Dubstep", "bass", "drops", "brostep", "wobble")),
    ("bluegrass", ("bluegrass", "Bluegrass", "americana", "Americana", "banjo", "roots music")),
    ("gospel", ("gospel", "Gospel", "sunday", "Sunday Morning", "hymns", "spirit")),
    ("hiphop", ("hip hop", "Hip Hop", "hiphop", "90s hip hop", "old school rap", "boom bap")),
)

# Titles that say nothing about content (as in the real MPD: "music", "my playlist", ...).
GENERIC_TITLES: tuple[str, ...] = (
    "music", "Music", "my playlist", "favorites", "Favorites", "new", "New Playlist", "songs",
    "good vibes", "Good Vibes", "random", "mix", "Mix", "stuff", "jams", "Jams", "playlist",
    "2017", "2016", "vibes", "Vibes", "happy", "Happy", "love", "Love", "fall", "spring",
    "winter", "morning", "night", "Night", "tunes", "faves", "favs", "ok", ":)", "me",
    "lit 🔥", "🔥🔥🔥", "my songs", "everything", "shower", "work", "Work", "summer nights",
    "good stuff", "life", "feel good", "throwbacks", "Throwbacks", "dance", "Dance",
)

# A few popular artists are named like everyday words, so artist-name detection has to tell
# "Summer" the artist from "summer" the season, from the data alone.
WORD_ARTIST_NAMES: tuple[str, ...] = (
    "Summer", "Happy", "Vibes", "Love", "Mix", "Night", "Morning", "Spring", "Shower", "Dance",
)

SYLLABLES: tuple[str, ...] = tuple(
    "ka lo mi ra ve ti no sa be da ri ko lu ma ne zo fi ga ha ji ke la mo na pa qui re se ta "
    "vo wa xi ya zu bri cla dre fro gli kra pli sto tri vex zan mor kel dax lin rev sol tam "
    "ony ash ell ira oma uva ero ix ul ak".split()
)

ARTIST_PREFIXES: tuple[str, ...] = ("", "", "", "", "", "The ", "DJ ", "Lil ", "MC ", "Young ")
ARTIST_SUFFIXES: tuple[str, ...] = ("", "", "", "", "", "", " Band", " & The Crew", " Trio", "s")

WORDS: tuple[str, ...] = tuple(
    "heart night love fire road dream light rain city star gold blue summer river wild home "
    "time dance sky ocean stone shadow moon sun ghost glass paper neon velvet silver honey "
    "thunder echo midnight morning highway garden island window mirror diamond angel devil "
    "money sugar lonely crazy young forever broken golden electric secret free falling "
    "running burning waiting dancing talking coming going tonight yesterday tomorrow "
    "cold warm sweet bitter high low fast slow little big last first only every kind wrong "
    "right better lost found open closed alive hollow empty holy magic simple perfect "
    "friends lovers kings queens hearts bones eyes hands lights roads dreams waves stars "
    "feel know want need say hold take give make break wake shake stay leave run".split()
)

TRACK_SUFFIXES: tuple[str, ...] = (
    "", "", "", "", "", "", "", "", " - Remix", " - Live", " (feat. {artist})",
    " - Acoustic", " - Radio Edit", " - Remastered",
)
