"""Wallet seed phrases: runs of BIP39 English words."""

from __future__ import annotations

import re

from mnemonic import Mnemonic

from twin.prepare.scrub.common import Span, lower_same_length

_SEED_WORD_RE = re.compile(r"[a-z]+")
# Between two words of a seed phrase: spaces, commas, dashes, or list numbering ("1. ", "2)").
_SEED_GAP_RE = re.compile(r"[\s,;.\-]*(?:[0-9]{1,2}[.):]?[\s,;.\-]*)?")
_BIP39_WORDS = frozenset(Mnemonic("english").wordlist)
# BIP39 words that are also everyday English; a run made mostly of these is a sentence.
_COMMON_BIP39_TEXT = """
    about above across act action add address after again age agree all alone also always
    among another any area arm around art ask auto away baby back bag ball bar base basic be
    because before begin behind believe below best better between big bird black blue boat
    body book both box boy bring brother build business busy but buy call can car card care
    carry case cat catch cause chair change check child city class clean clever close cloud
    come cook cool copy correct cost could country course cover crazy cup custom cute day deal
    dinner dog door double dream drink drive during early easy eat eight either else end enjoy
    enough enter even evening ever every exact example exit face fact fall family fan feel few
    file film find fine fire first fish five fix floor follow food foot for force forget four
    friend from front fun funny future game garden gas get gift girl give glad glass goal good
    great green group grow guess half hand happy hard have head hello help here high hold home
    hope hour house how hundred idea image into jacket job join joke just keep key kid kind
    kitchen know large last late later laugh learn leave left legal lesson letter level life
    light like list little live long lot love lucky lunch mail make man many match matter may
    maybe mean meet member message middle minute miss moment money month more morning mother
    move movie much music must name near need never news next nice night nine noise normal
    north nose not note nothing now number object off office often old once one only open
    option order other outside over own page paper parent park part party pass people perfect
    phone photo picture place plan play please point post price problem put question quick
    quite rain random rather reach ready real reason recall record remember rent report rest
    rich ride right room run sad safe same save say school screen sea season seat second see
    seed sell send service seven share she shoe shop short shoulder show sick side sign simple
    since sister six size sleep slow small smile snow social soon sorry sound soup south space
    speak special spend sport spot spring stay still stock stop story street strong student
    stuff such sugar summer sun sure surprise system table talk task taxi teach team tell ten
    term test text thank that then there they thing this three ticket time tired today
    together tomorrow tonight top total tourist town track trade train travel tree trip true
    try turn twelve twenty two type under until upon use usual very video view visit voice
    wait walk wall want warm wash water way wear weather web wedding week weekend what when
    where which while white whole why wide wife will win window winter wish with woman wonder
    word work world worry write wrong yard year yellow you young"""
_COMMON_BIP39 = frozenset(_COMMON_BIP39_TEXT.split()) & _BIP39_WORDS


def find_seeds(text: str, spans: list[Span], *, min_words: int) -> None:
    """Add the runs of at least `min_words` BIP39 words that do not read as a sentence."""
    if len(text) < min_words * 4 or not _may_hold_seed(text, min_words):
        return
    lowered = lower_same_length(text)
    run: list[re.Match[str]] = []
    for m in _SEED_WORD_RE.finditer(lowered):
        joined = bool(run) and _SEED_GAP_RE.fullmatch(lowered, run[-1].end(), m.start())
        if m.group() in _BIP39_WORDS and (joined or not run):
            run.append(m)
            continue
        _flush_seed(run, spans, min_words)
        run = [m] if m.group() in _BIP39_WORDS else []
    _flush_seed(run, spans, min_words)


def _may_hold_seed(text: str, min_words: int) -> bool:
    # Cheap count before the exact scan: most long messages have few BIP39 words.
    # A word that strips to a BIP39 word is ASCII: counting those is a cheap upper bound.
    words = text.lower().split()
    if sum(map(str.isascii, words)) < min_words:
        return False
    stripped = (w.strip(",.;:-()") for w in words)
    return sum(w in _BIP39_WORDS for w in stripped) >= min_words


def _flush_seed(run: list[re.Match[str]], spans: list[Span], min_words: int) -> None:
    if len(run) < min_words:
        return
    common = sum(m.group() in _COMMON_BIP39 for m in run)
    if common * 2 <= len(run):
        spans.append(Span(run[0].start(), run[-1].end(), "SEED"))
