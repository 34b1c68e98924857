"""Writes data/sample/dialogues.csv: 60 short dialogues written for this repo.

The layout is the LLMs-vs-Humans one (dialog_id, emotion, situation, speaker_uttr,
response_<source>, rating_<source>), so the demo exercises the same reader as the
real file. Every text here was written for this project. Ratings (1-3) are drawn
per source from the real file's shares of 1 / 2 / 3 (with a dialogue effect, so some
dialogues are rated low by all: the paper's test split), and each reply is written at
the quality of its rating (names the feeling and supports: 3; one of the two or
generic: 2; curt or off the point: 1), one step off in 15% of replies as raters
disagree. No rule makes one source win: a human reply can be the best of five.

    python data/sample/make_sample.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path
from statistics import NormalDist

# (emotion, situation, speaker utterance, human reply, how it feels, a supportive line)
DIALOGUES = [
    (
        "afraid",
        "I heard scratching inside the wall of my bedroom last night.",
        "I barely slept, every little sound made me jump.",
        "Probably mice, get a trap.",
        "unsettling to lie awake listening for it",
        "A pest inspector could tell you what it is, and that might let you rest again.",
    ),
    (
        "afraid",
        "My doctor called me back in for a second scan.",
        "They would not say why over the phone and I keep imagining the worst.",
        "Doctors do that all the time, it is routine.",
        "frightening to wait without answers",
        "Writing your questions down before the visit may help you feel a bit more in control.",
    ),
    (
        "afraid",
        "A big storm is heading toward our town this weekend.",
        "Our basement flooded last year and I am dreading a repeat.",
        "Move your stuff upstairs now.",
        "scary to face that again after last year",
        "Moving the important things up early might ease some of the worry.",
    ),
    (
        "angry",
        "My roommate ate the birthday cake I baked for my sister.",
        "I spent hours on it and she just shrugged.",
        "Wow, that is rude. Did you say something?",
        "infuriating when your effort is brushed aside",
        "It seems fair to tell her how much it hurt and ask her to make it right.",
    ),
    (
        "angry",
        "Someone keyed the side of my new car in a parking lot.",
        "I saved for two years to buy it.",
        "People are the worst. Check for cameras.",
        "maddening after saving so long",
        "The lot may have cameras, and your insurer could help with the repair.",
    ),
    (
        "angry",
        "My manager took credit for my report in the team meeting.",
        "He presented my charts as if he made them.",
        "That happens a lot in offices.",
        "really unfair to watch your work go to someone else",
        "Keeping your drafts and emails could help if you decide to raise it.",
    ),
    (
        "anxious",
        "I have a job interview tomorrow morning.",
        "My hands are already shaking just thinking about it.",
        "You will be fine, just be yourself.",
        "nerve-racking the night before",
        "A short practice run of your answers tonight might settle your nerves.",
    ),
    (
        "anxious",
        "My son is driving alone on the highway for the first time.",
        "I keep checking my phone for a message that he arrived.",
        "He is probably fine, stop worrying.",
        "hard to wait while someone you love is on the road",
        "Asking him to text when he arrives could give you some peace.",
    ),
    (
        "anxious",
        "I am giving a toast at my best friend's wedding.",
        "I have rewritten it five times and it still feels wrong.",
        "Keep it short and nobody will mind.",
        "stressful to want it to be perfect for someone you love",
        "Reading it aloud to a friend might show you it is already good.",
    ),
    (
        "ashamed",
        "I forgot my grandmother's ninetieth birthday.",
        "Everyone else called her and I did not.",
        "Just call her today.",
        "painful to realize you missed such a big day",
        "A warm call today could still mean a lot to her.",
    ),
    (
        "ashamed",
        "I snapped at a cashier who was just doing her job.",
        "I was tired but she did not deserve it.",
        "Everyone has bad days.",
        "uncomfortable to look back on that moment",
        "Going back to apologize, if you can, might lift some of that weight.",
    ),
    (
        "ashamed",
        "I failed my driving test for the third time.",
        "My younger brother passed on his first try.",
        "Third time is not so bad.",
        "discouraging to compare yourself like that",
        "Plenty of good drivers needed several tries, and each attempt teaches you something.",
    ),
    (
        "disappointed",
        "The concert I waited months for was cancelled an hour before.",
        "We had already driven two hours to get there.",
        "Did you at least get a refund?",
        "such a letdown after all that anticipation",
        "Maybe you can turn the trip into a small outing of its own.",
    ),
    (
        "disappointed",
        "I did not get the promotion I worked toward all year.",
        "They gave it to someone who joined six months ago.",
        "That stinks. Maybe next year.",
        "deflating after a whole year of effort",
        "Asking your manager what tipped the decision could help you plan your next step.",
    ),
    (
        "disappointed",
        "My garden tomatoes all split after the heavy rain.",
        "I was going to make sauce for the whole family.",
        "Rain does that to tomatoes.",
        "frustrating to lose a whole season's work",
        "Some split ones may still be fine for sauce if you pick them soon.",
    ),
    (
        "excited",
        "I just booked my first trip abroad.",
        "I leave for Portugal in three weeks!",
        "Nice! Try the pastries.",
        "thrilling to have your first big trip ahead",
        "I hope every part of it is as wonderful as you imagine.",
    ),
    (
        "excited",
        "My band got invited to play a local festival.",
        "We have only ever played in my garage.",
        "Cool, which stage?",
        "amazing to go from the garage to a real stage",
        "Enjoy every minute up there, you earned it.",
    ),
    (
        "excited",
        "We are adopting a puppy this Saturday.",
        "The kids have already picked out three names.",
        "Puppies are a lot of work.",
        "wonderful to welcome a new member to the family",
        "Those first days with a puppy are special, I hope you all love them.",
    ),
    (
        "grateful",
        "A stranger paid for my groceries when my card was declined.",
        "I was so embarrassed and she just smiled and paid.",
        "That is really nice of her.",
        "touching when a stranger shows that kind of kindness",
        "Passing that kindness on someday would be a lovely way to thank her.",
    ),
    (
        "grateful",
        "My neighbor mowed my lawn every week while I was recovering from surgery.",
        "He never asked for anything in return.",
        "You have a good neighbor.",
        "moving to be cared for like that while healing",
        "A small thank-you note or meal might show him how much it meant.",
    ),
    (
        "grateful",
        "My teacher stayed late every day to help me with calculus.",
        "I passed the final with a B.",
        "Congrats on the B.",
        "heartwarming to have someone believe in you",
        "She would probably love to hear how much her help meant.",
    ),
    (
        "guilty",
        "I told my friend I was sick so I could skip her party.",
        "Now she keeps asking if I feel better.",
        "Just tell her the truth.",
        "uncomfortable to carry that small lie",
        "Being honest with her might feel hard at first but lighter afterwards.",
    ),
    (
        "guilty",
        "I broke my sister's favorite mug and hid the pieces.",
        "She has been looking for it all week.",
        "Buy her a new one.",
        "heavy to watch her search while you know",
        "Telling her and offering a replacement could clear the air.",
    ),
    (
        "guilty",
        "I have not visited my dad in the care home for a month.",
        "Work has been crazy but I still feel awful.",
        "He will understand.",
        "hard to feel torn between work and family",
        "Even a short visit or call this week might mean a lot to both of you.",
    ),
    (
        "lonely",
        "I moved to a new city for work and know nobody here.",
        "Weekends are the worst, I just sit in my apartment.",
        "Join a gym or something.",
        "isolating to spend weekends alone in a new place",
        "A club or class around something you enjoy could be a gentle way to meet people.",
    ),
    (
        "lonely",
        "All my friends got married and have kids now.",
        "I feel like I do not fit into their lives anymore.",
        "You will find your people.",
        "painful to feel left behind by the people you love",
        "Telling one of them how you feel might open a door you did not expect.",
    ),
    (
        "lonely",
        "My partner is deployed overseas for nine months.",
        "The house is so quiet at night.",
        "Video calls help.",
        "hard to face those quiet nights without them",
        "Regular calls and little routines can make the months feel shorter.",
    ),
    (
        "proud",
        "My daughter read her first book all by herself.",
        "She sounded out every word and did not give up.",
        "Kids grow up fast.",
        "wonderful to see her persistence pay off",
        "Celebrating her effort will help her love reading even more.",
    ),
    (
        "proud",
        "I ran my first half marathon this morning.",
        "A year ago I could not run to the corner.",
        "How long did it take?",
        "incredible to see how far you have come in a year",
        "You should be really proud of the work behind that finish line.",
    ),
    (
        "proud",
        "I finished building a bookshelf from scratch.",
        "It is a little crooked but I made it myself.",
        "Crooked adds character.",
        "satisfying to hold something you built yourself",
        "Every project teaches you something, and this one clearly taught you a lot.",
    ),
    (
        "sad",
        "My childhood dog passed away yesterday.",
        "He was with me for fourteen years.",
        "Sorry about your dog.",
        "heartbreaking to lose a friend of fourteen years",
        "Sharing your favorite memories of him might bring some comfort.",
    ),
    (
        "sad",
        "My best friend is moving across the country.",
        "We have seen each other every week since school.",
        "You can still text.",
        "sad to lose that weekly closeness",
        "Planning a visit together might give you both something to look forward to.",
    ),
    (
        "sad",
        "I found my late mother's handwriting in an old cookbook.",
        "I just sat on the kitchen floor and cried.",
        "That must have been hard.",
        "moving and painful to find a piece of her like that",
        "Maybe cooking that recipe one day could be a way to feel close to her.",
    ),
    (
        "surprised",
        "My coworkers threw me a party for my tenth year at the company.",
        "I had no idea anyone even remembered.",
        "Ten years is a long time.",
        "lovely to find out how much you are valued",
        "It sounds like you have made a real mark on the people around you.",
    ),
    (
        "surprised",
        "I found a hundred dollar bill in an old winter coat.",
        "I must have put it there years ago.",
        "Free money!",
        "fun to stumble on a gift from your past self",
        "Treating yourself to something small with it sounds well deserved.",
    ),
    (
        "surprised",
        "My quiet uncle turned out to be a champion ballroom dancer.",
        "He showed us trophies none of us knew about.",
        "Ha, that is funny.",
        "delightful to discover a hidden side of someone",
        "Maybe he would teach you a few steps sometime.",
    ),
    (
        "embarrassed",
        "I waved back at someone who was waving to the person behind me.",
        "I pretended to fix my hair afterwards.",
        "Happens to everyone.",
        "awkward in the moment, even if it is small",
        "Most people forget moments like that right away, so be gentle with yourself.",
    ),
    (
        "embarrassed",
        "I called my new boss by the wrong name all week.",
        "Nobody corrected me until Friday.",
        "Just apologize and move on.",
        "mortifying to learn it only at the end of the week",
        "A light apology will likely be enough, new names trip everyone up.",
    ),
    (
        "embarrassed",
        "My phone rang loudly during a funeral service.",
        "Everyone turned to look at me.",
        "You should have silenced it.",
        "awful to feel every eye on you at such a moment",
        "A quiet word to the family afterwards could ease your mind.",
    ),
    (
        "hopeful",
        "I applied for a scholarship to study nursing.",
        "The results come out next month.",
        "Good luck.",
        "exciting to have that chance ahead of you",
        "Whatever the result, wanting to care for others is a great start.",
    ),
    (
        "hopeful",
        "My dad starts a new treatment next week.",
        "The doctors say it has helped many people like him.",
        "Fingers crossed.",
        "encouraging to have a new path forward",
        "I hope it works well for him and that you get some rest too.",
    ),
    (
        "hopeful",
        "I planted an apple tree with my kids.",
        "We hope to pick our own apples in a few years.",
        "Apples take a while.",
        "lovely to start something you will grow together",
        "Watching it grow each year could become a family tradition.",
    ),
    (
        "jealous",
        "My sister got a new car for her graduation.",
        "I got a card when I graduated.",
        "Life is not fair sometimes.",
        "painful to feel treated differently",
        "Talking openly with your parents might help you feel heard.",
    ),
    (
        "jealous",
        "My friend's painting got into a gallery show.",
        "I have been painting longer and never got in.",
        "Keep trying.",
        "hard to cheer for someone while hurting yourself",
        "Your own path is still unfolding, and her success does not close your door.",
    ),
    (
        "jealous",
        "My partner spends a lot of time texting an old friend.",
        "I know it is probably innocent but it bugs me.",
        "Ask who it is.",
        "unsettling to feel left out of that part of their life",
        "Sharing how it makes you feel, calmly, could help you both.",
    ),
    (
        "nostalgic",
        "I drove past my old elementary school today.",
        "The playground I loved is gone now.",
        "Schools change.",
        "bittersweet to see a place from your childhood change",
        "Those memories are still yours, even if the playground is gone.",
    ),
    (
        "nostalgic",
        "I found a box of letters from my college roommate.",
        "We used to write each other every summer.",
        "Do you still talk?",
        "warm and a little wistful to read them again",
        "Reaching out to her after all this time might make her day.",
    ),
    (
        "nostalgic",
        "The smell of cinnamon reminded me of my grandpa's bakery.",
        "I spent every Saturday there as a kid.",
        "Bakeries smell great.",
        "sweet to be carried back to those Saturdays",
        "Baking one of his recipes could keep that memory alive.",
    ),
    (
        "devastated",
        "Our house was damaged in a fire last week.",
        "We got out safely but lost most of our photos.",
        "At least you are all safe.",
        "devastating to lose so much of your history",
        "Relatives may have copies of some photos, and asking could bring a few back.",
    ),
    (
        "devastated",
        "My engagement ended two weeks before the wedding.",
        "I keep seeing the dress hanging in my closet.",
        "Better now than after.",
        "crushing to have your future change so suddenly",
        "Leaning on friends and letting yourself grieve is important right now.",
    ),
    (
        "devastated",
        "I lost my job after twelve years at the company.",
        "I do not even know how to look for work anymore.",
        "Update your resume.",
        "overwhelming to start over after so many years",
        "A career center or former colleagues could help you take the first steps.",
    ),
    (
        "joyful",
        "My baby laughed for the first time today.",
        "It was the best sound I have ever heard.",
        "Babies are cute.",
        "pure joy to hear that first laugh",
        "Those little firsts are treasures, I hope you caught it on video.",
    ),
    (
        "joyful",
        "I finally paid off all my student loans.",
        "I did a little dance in my kitchen.",
        "Nice, no more payments.",
        "such a relief and a joy after all those years",
        "You earned that dance, enjoy the freedom.",
    ),
    (
        "joyful",
        "My best friend and I reunited after ten years apart.",
        "It felt like no time had passed.",
        "That is awesome.",
        "beautiful when a friendship picks up right where it left off",
        "I hope you make plans to see each other again soon.",
    ),
    (
        "terrified",
        "Our plane dropped suddenly during heavy turbulence.",
        "People screamed and I gripped the seat for dear life.",
        "Planes are built for that.",
        "terrifying to feel the plane drop like that",
        "It is normal to feel shaken afterwards; give yourself time to settle.",
    ),
    (
        "terrified",
        "I got lost hiking after dark with my phone at two percent.",
        "I could not see the trail at all.",
        "Always carry a flashlight.",
        "frightening to be alone in the dark like that",
        "I am glad you made it out, and a small emergency kit could help next time.",
    ),
    (
        "terrified",
        "A car ran a red light and almost hit my kids in the crosswalk.",
        "I still shake when I think about it.",
        "Drivers are crazy these days.",
        "terrifying to see your kids in danger",
        "Reporting the crossing to the city might help keep other families safe too.",
    ),
    (
        "content",
        "I spent a quiet Sunday reading on my porch.",
        "No plans, no phone, just a book and tea.",
        "Sounds relaxing.",
        "peaceful to have a day that is entirely yours",
        "Days like that are worth making room for more often.",
    ),
    (
        "content",
        "My small vegetable garden fed us all summer.",
        "We barely bought produce from the store.",
        "Gardening saves money.",
        "satisfying to eat what you grew yourself",
        "That is a great reward for all the time you put in.",
    ),
    (
        "content",
        "Our family finally has a regular dinner night together.",
        "Everyone puts their phones away for an hour.",
        "Good rule.",
        "warm to have that hour with everyone present",
        "Keeping that tradition going could become something the kids remember.",
    ),
]

SOURCES = ["human", "chatgpt_empathy", "llama_empathy", "gemini_empathy", "mixtral_empathy"]

# Share of ratings 1 / 2 / 3 per source in the real LLMs-vs-Humans file (2,000 dialogues), so that
# the sample's ratings follow the same mix; e.g. 49% of human replies there are rated 3.
REAL_RATING_SHARES = {
    "human": (0.171, 0.336, 0.493),
    "chatgpt_empathy": (0.071, 0.2815, 0.6475),
    "llama_empathy": (0.087, 0.3035, 0.6095),
    "gemini_empathy": (0.124, 0.3355, 0.5405),
    "mixtral_empathy": (0.1025, 0.3015, 0.596),
}
DIALOGUE_SPREAD = 0.8  # a dialogue-level effect: some dialogues get low ratings from everyone (the test split)
RATER_NOISE = 0.15  # a reply written at one quality is sometimes rated one step off, as human raters do

# Reply styles per quality level, in each source's voice. {feel} names the feeling, {support} is a
# helpful line, {curt} is the short human reply. Level 3 names the feeling and supports; level 2
# does one of the two or stays generic; level 1 is curt, dismissive or off the point.
STYLES = {
    "human": {
        3: [
            "Oh no, that sounds {feel}. {support}",
            "I get it, it is {feel}. {support}",
            "{curt} Honestly, that must be {feel}. {support}",
        ],
        2: ["{curt} That sounds {feel}.", "{curt} {support}", "Hmm, {feel_short}. What are you going to do?"],
        1: ["{curt}", "Eh, that happens.", "{curt} Anyway, what else is new?"],
    },
    "chatgpt_empathy": {
        3: ["That sounds {feel}. {support}", "It makes sense that you feel this way; it is {feel}. {support}"],
        2: [
            "That sounds {feel}. I hope things get better soon.",
            "{support}",
            "I am sorry to hear that. It can be a difficult experience.",
        ],
        1: [
            "It is important to stay positive in every situation.",
            "Thank you for sharing. Let me know if there is anything else.",
        ],
    },
    "llama_empathy": {
        3: [
            "I can understand how {feel_short} this feels for you. {support} Please take care of yourself.",
            "I hear you, it is {feel}. {support}",
        ],
        2: [
            "I can understand how {feel_short} this feels for you. Please take care of yourself.",
            "{support} Please take care of yourself.",
        ],
        1: ["I understand. Many people go through similar situations.", "Please take care of yourself."],
    },
    "gemini_empathy": {
        3: [
            "Feeling {emotion} here makes complete sense, it is {feel}. {support}",
            "That is {feel}, and your reaction is completely natural. {support}",
        ],
        2: ["Feeling {emotion} here makes complete sense.", "Here is a thought: {support_lower}"],
        1: ["Situations like this are common.", "Try not to think about it too much."],
    },
    "mixtral_empathy": {
        3: [
            "It must be {feel}. {support} Have you been able to talk with someone close about it?",
            "That is {feel}. {support}",
        ],
        2: [
            "It must be {feel}. Have you been able to talk with someone close about it?",
            "Have you been able to talk with someone close about it?",
        ],
        1: ["That is interesting. What happened next?", "Okay. Is there anything else on your mind?"],
    },
}


def rating_cuts(shares: tuple[float, float, float], spread: float) -> tuple[float, float]:
    """Cut points on a latent N(0, 1 + spread^2) scale that give these marginal shares of 1 / 2 / 3."""
    sigma = (1 + spread**2) ** 0.5
    inv = NormalDist().inv_cdf
    return inv(shares[0]) * sigma, inv(shares[0] + shares[1]) * sigma


def draw_ratings(n_dialogues: int, seed: int = 7) -> list[dict[str, int]]:
    """Ordered-probit ratings: a dialogue effect shared by its five replies plus each reply's own draw.

    No source is favoured beyond its real share: in a given dialogue the human reply
    can beat every model, and a model reply can be rated 1.
    """
    rng = random.Random(seed)
    cuts = {s: rating_cuts(REAL_RATING_SHARES[s], DIALOGUE_SPREAD) for s in SOURCES}
    out = []
    for _ in range(n_dialogues):
        effect = rng.gauss(0, DIALOGUE_SPREAD)
        row = {}
        for src in SOURCES:
            latent = effect + rng.gauss(0, 1)
            low, high = cuts[src]
            row[src] = 1 if latent < low else 2 if latent < high else 3
        out.append(row)
    return out


def write_reply(rng: random.Random, source: str, quality: int, emotion: str, curt: str, feel: str, support: str) -> str:
    template = rng.choice(STYLES[source][quality])
    feel_short = feel.split(" to ")[0].split(" when ")[0].split(" after ")[0]
    return template.format(
        feel=feel,
        feel_short=feel_short,
        support=support,
        support_lower=support[0].lower() + support[1:],
        curt=curt,
        emotion=emotion,
    )


def main() -> None:
    out = Path(__file__).with_name("dialogues.csv")
    header = ["dialog_id", "emotion", "situation", "speaker_uttr"]
    header += [f"response_{s}" for s in SOURCES] + [f"rating_{s}" for s in SOURCES]
    ratings = draw_ratings(len(DIALOGUES))
    rng = random.Random(11)
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for i, ((emotion, situation, utterance, curt, feel, support), rate) in enumerate(zip(DIALOGUES, ratings)):
            replies = {}
            for src in SOURCES:
                quality = rate[src]
                if rng.random() < RATER_NOISE:  # the text is one step better or worse than its rating
                    quality = min(3, max(1, quality + rng.choice((-1, 1))))
                replies[src] = write_reply(rng, src, quality, emotion, curt, feel, support)
            writer.writerow(
                [f"sample:{i:03d}", emotion, situation, utterance]
                + [replies[s] for s in SOURCES]
                + [rate[s] for s in SOURCES]
            )
    print(f"wrote {len(DIALOGUES)} dialogues to {out}")


if __name__ == "__main__":
    main()
