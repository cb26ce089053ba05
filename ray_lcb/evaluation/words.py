"""Common English words for RULER's random keys and word lists.

RULER draws needle keys from adjective-noun pairs and CWE words from the
wonderwords lists; wonderwords is not a dependency, so this module ships a few
hundred common words of its own. Called by ``ruler_niah`` (keys) and
``ruler_cwe`` (word lists).
"""

from __future__ import annotations

import functools
import re
from collections import Counter

ADJECTIVES = """
able absent active actual afraid aggressive agreeable alert alive amazing ancient angry annual
anxious apparent arctic arid automatic available average awake aware awful bad bald basic
beautiful bent best better big bitter black bland blank blind blue bold boring bouncy brave
brief bright brilliant broad broken brown busy calm capable careful careless central certain
cheap chemical chief chilly civil classic clean clear clever close cloudy clumsy coastal cold
colorful comfortable common complete complex concrete confident constant cool correct cosmic
costly crazy creamy creative crisp crooked crowded cruel cuddly cultural curious current curly
cute damp dangerous dark dear decent deep delicate dense different difficult direct dirty
distant dizzy double dramatic dry dull dusty eager early eastern easy educated elastic electric
elegant empty endless enormous entire equal even evil exact excellent exciting expensive
expert extra faint fair faithful false familiar famous fancy fast fat fatal fearless federal
fierce final fine firm flat flexible fluffy foolish foreign formal fragile frank free frequent
fresh friendly frozen full funny fuzzy general gentle giant gifted glad glass global golden
good gorgeous graceful grand grateful gray great green grumpy guilty happy hard harsh healthy
heavy helpful hidden high hollow holy honest horrible hot huge humble hungry icy ideal idle
illegal immense important impossible inner innocent internal jolly juicy junior keen kind
large late lazy leading legal level light likely little live lively local lonely long loose
lost loud lovely low loyal lucky mad magic main major male massive mature medical mellow mental
mere messy mighty mild military minor misty mobile modern modest moral muddy mute narrow
nasty national native natural neat negative nervous new nice noble noisy normal northern
novel numerous obvious odd official old open optimal orange ordinary organic original other
outdoor outer pale parallel patient peaceful perfect personal physical plain plastic pleasant
plenty polite poor popular positive powerful precious pretty previous primary prime private
proper proud public pure purple quick quiet radical random rapid rare raw ready real recent
red regular relevant remote rich right rigid ripe rough round royal rural sad safe salty
scarce secret secure senior serious severe shallow sharp shiny short shy silent silly silver
similar simple single slim slow small smart smooth soft solar solid sour southern spare
special spicy splendid square stable steady steep sticky stiff still strange strict strong
stupid subtle sudden sunny super sweet swift tall tame tender terrible thick thin tidy tight
tiny tough tropical true typical ugly unique upper urban useful usual vague valid vast verbal
violet visible vital vivid warm weak wealthy weird western wet white whole wide wild wise
wooden yellow young zealous
""".split()

NOUNS = """
account acid action activity actor advice age agency air airport album alarm animal answer
apple area argument army arrow art article artist aspect attempt aunt author autumn baby
badge bag bakery ball balloon banana band bank barn base basket bath battle beach bean bear
beard bed bee beef bell belt bench bicycle bird birthday blade blanket blood boat body bone
book boot border bottle box boy brain branch bread breakfast brick bridge brother brush bucket
building bus butter button cabin cable cake camera camp candle canvas captain car card carpet
carrot castle cat cattle cave ceiling cell chain chair chalk channel cheese chicken child
chimney church circle city class clock cloud coach coast coat coffee coin college color comb
comet computer cook copper corn cottage cotton country county cousin cow crane crayon cream
creature crib crow crowd crown cup curtain cushion customer cycle dad dance daughter deer desk
diamond dinner doctor dog doll dolphin door dragon drawer dream dress drink drum duck eagle
ear earth egg elbow elephant engine error event eye face factory fairy family farm father
feather fence field finger fire fish flag flame flower fog food foot forest fork fountain fox
friend frog fruit galaxy game garage garden gate ghost giraffe girl glove goat gold grape
grass guitar hair hall hammer hand harbor hat hawk heart helmet hill history hobby hole honey
hook horse hospital hotel house ice idea insect island jacket jam jar jelly jewel judge juice
kettle key king kitchen kite kitten knee knife ladder lady lake lamp language lawyer leaf
lemon letter library lion lizard lock machine magnet mailbox map market meadow meal meat
medal melody metal milk mine mirror money monkey moon morning mother motor mountain mouse
mouth movie muscle museum music nail needle nest net night noodle nose notebook novel number
ocean office onion orange orchard owl oyster page paint palace pan paper parcel park parrot
party pasta peach pear pen pencil pepper piano picture pie pig pillow pilot pin pipe pizza
planet plant plate player plum pocket poem poet pond potato powder prince printer puppy puzzle
queen question rabbit radio rain rainbow river road robot rock rocket roof room root rope rose
sailor salad salt sand sandwich school scissors sea season seed shadow sheep shelf shell ship
shirt shoe shop shoulder singer sister skirt sky snail snake snow soap sock sofa soldier song
soup spider spoon spring square squirrel stable stage star station steam stem stone storm
story stove stream street student sugar summer sun swan sweater table tail teacher teapot
tent theater thread throne thunder ticket tiger tomato tongue tooth tower town toy tractor
train tree truck trumpet tulip tunnel turtle umbrella uncle valley vase village violin voice
wagon wall wallet watch water wave whale wheel whistle window wing winter wizard wolf wood
worm writer yard yacht zebra
""".split()

VERBS = """
accept add admire agree allow answer appear arrive ask bake bathe begin believe belong bend
bite blink boil borrow bounce breathe bring build burn buy call carry catch change chase cheer
choose clap climb close collect comb compare cook copy count cover crawl cross cry cut dance
decide deliver describe destroy dig dive divide dream drink drive drop earn eat enjoy enter
escape explain explore fetch fill find finish fix float fly fold follow forget forgive gather
giggle give glow grab grow guess hang happen hate hear help hide hop hope hug hunt hurry imagine
invent invite join jump kick kneel knit knock laugh lead learn leave lend lift listen live
look lose love march marry measure melt mend mix move nod notice obey offer open order paint
pass pay pick plan plant play point pour pray prefer promise pull push race rain reach read
relax remember repair repeat reply rescue return ride ring roll run rush sail scream search
sell send sew shake share shiver shout sing sink sit skate ski sleep slide smell smile sneeze
sniff solve sort speak spell spend spill spin split spray stand stare start stay steal step
stir stop stretch study swim swing talk taste teach tease tell thank throw tickle touch trace
travel try turn twist understand unlock visit wait walk wander want wash watch wave whisper
win wink wish wonder work worry write yawn yell
""".split()

# CWE needs several thousand distinct words at 128K; the essay vocabulary tops
# the shipped list up (see ``cwe_vocabulary``). Words of 5+ letters, minus the
# essays' most frequent ones, keep out function words ("which", "there") that a
# substring match would find in almost any reply.
_ESSAY_WORD = re.compile(r"\b[a-z]{5,12}\b")
_NUM_FREQUENT_ESSAY_WORDS = 150


def word_lists() -> tuple[list[str], list[str], list[str]]:
    """The deduplicated, sorted adjectives, nouns and verbs shipped with ray_lcb."""
    return sorted(set(ADJECTIVES)), sorted(set(NOUNS)), sorted(set(VERBS))


@functools.lru_cache(maxsize=1)
def cwe_vocabulary() -> tuple[str, ...]:
    """Distinct lowercase words for CWE's numbered lists, in a fixed order.

    RULER uses the ~10k wonderwords nouns, adjectives and verbs. Here the
    shipped words come first and the Paul Graham essays' vocabulary follows,
    giving ~7k words: enough to fill a 128K CWE sample.
    """
    from ray_lcb.evaluation.haystack import load_essay_text

    adjectives, nouns, verbs = word_lists()
    shipped = sorted(set(adjectives + nouns + verbs))
    counts = Counter(_ESSAY_WORD.findall(load_essay_text()))
    frequent = {word for word, _ in counts.most_common(_NUM_FREQUENT_ESSAY_WORDS)}
    extra = sorted(set(counts) - frequent - set(shipped))
    return tuple(shipped + extra)
