"""Printed text on a pack, read by Tesseract (Debian's libtesseract5 with its simplified Chinese and English
models), and matched against the catalog's names.

    reader = Reader()                  # the models loaded once (a few hundred ms); None-safe if absent
    text = reader.read(grey_pixels)    # what is printed, as one string ("" when Tesseract is not there)
    names = Names(catalog_items)       # every item's words, English and Chinese
    names.score(text, item_id)         # 1.0: all of its name's words read; 0 otherwise
    names.named(text)                  # the one item whose whole name was read, or None

The binding is Tesseract's own C API through ctypes: the engine and its models stay loaded between looks
(pytesseract starts the tesseract program and loads the models again for every look: 150-700 ms more each
time here), and nothing is compiled at install time (tesserocr builds against libtesseract-dev and
Cython's C++ output, minutes on a fresh 2-core machine, and pins a Tesseract version). The C API is a
stable, versioned part of libtesseract (capi.h), and ctypes is how this project already loads its C loop.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import difflib
import logging
import os
import re
import threading
import unicodedata

import numpy as np

log = logging.getLogger("lens")
# chi_sim first: Debian's fast chi_sim model reads the Latin letters of a pack too, while with eng first the
# Chinese on these packs came out as Latin guesses ("ji PY AR" for 熊猫可乐); eng adds English words' dictionary.
LANGUAGES = "chi_sim+eng"
SPARSE_TEXT = 11  # page segmentation: text in scattered blocks, as on a pack, not a page of columns
WORD = re.compile(r"[A-Z]{2,}")


def _library():
    os.environ.setdefault("OMP_THREAD_LIMIT", "1")  # one look at a time; OpenMP's threads fight on 2 cores
    path = ctypes.util.find_library("tesseract") or "libtesseract.so.5"
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    lib.TessBaseAPICreate.restype = ctypes.c_void_p
    lib.TessBaseAPIInit3.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.TessBaseAPISetPageSegMode.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessBaseAPISetImage.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_int] * 4
    lib.TessBaseAPISetSourceResolution.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessBaseAPIGetUTF8Text.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIGetUTF8Text.restype = ctypes.c_void_p
    lib.TessDeleteText.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIClear.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPISetVariable.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.TessBaseAPIEnd.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIRecognize.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    lib.TessBaseAPIGetIterator.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIGetIterator.restype = ctypes.c_void_p
    lib.TessResultIteratorGetPageIterator.argtypes = [ctypes.c_void_p]
    lib.TessResultIteratorGetPageIterator.restype = ctypes.c_void_p
    lib.TessResultIteratorGetUTF8Text.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessResultIteratorGetUTF8Text.restype = ctypes.c_void_p
    lib.TessPageIteratorBoundingBox.argtypes = [ctypes.c_void_p, ctypes.c_int] + [ctypes.POINTER(ctypes.c_int)] * 4
    lib.TessResultIteratorNext.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.TessResultIteratorDelete.argtypes = [ctypes.c_void_p]
    lib.TessBaseAPIDelete.argtypes = [ctypes.c_void_p]
    return lib


def _quiet_leptonica() -> None:
    path = ctypes.util.find_library("lept") or "liblept.so.5"
    try:
        ctypes.CDLL(path).setMsgSeverity(6)  # L_SEVERITY_NONE
    except (OSError, AttributeError):
        pass


class Reader:
    """One Tesseract engine, its models loaded on first use, one read at a time."""

    def __init__(self, languages: str = LANGUAGES):
        self.languages = languages
        self._lib = None
        self._api = None
        self._lock = threading.Lock()
        self.missing = ""  # why it cannot read, once it found out

    def _start(self) -> bool:
        if self._api is not None:
            return True
        if self.missing:
            return False
        lib = _library()
        if lib is None:
            self.missing = "libtesseract5 is not installed (make install puts it there)"
        else:
            api = lib.TessBaseAPICreate()
            if lib.TessBaseAPIInit3(api, None, self.languages.encode()) != 0:
                lib.TessBaseAPIDelete(api)
                self.missing = (f"Tesseract has no {self.languages} models "
                                "(tesseract-ocr-chi-sim, tesseract-ocr-eng; make install puts them there)")
            else:
                lib.TessBaseAPISetPageSegMode(api, SPARSE_TEXT)
                # Its chatter ("Estimating resolution as ...", "Detected 5 diacritics") goes to a file, not
                # to the app's stderr, which is its log; Leptonica's own messages are turned off.
                lib.TessBaseAPISetVariable(api, b"debug_file", os.devnull.encode())
                _quiet_leptonica()
                self._lib, self._api = lib, api
                return True
        log.warning("lens: no text reading: %s", self.missing)
        return False

    def read(self, grey: np.ndarray) -> str:
        """The text in a grey picture (uint8, H x W); "" when there is none or no Tesseract."""
        return self.read_words(grey)[0]

    def read_words(self, grey: np.ndarray) -> tuple[str, list[tuple[str, tuple[int, int, int, int]]]]:
        """The text in a grey picture, and each word read with its box (left, top, right, bottom) in the
        picture's pixels: where a name was read is where the card's preview outlines it."""
        with self._lock:
            if not self._start():
                return "", []
            pixels = np.ascontiguousarray(grey, dtype=np.uint8)
            lib, api = self._lib, self._api
            lib.TessBaseAPISetImage(api, pixels.ctypes.data, pixels.shape[1], pixels.shape[0], 1, pixels.strides[0])
            lib.TessBaseAPISetSourceResolution(api, 150)  # a pack's print at arm's length; quiets its guess
            try:
                text = _taken(lib, lib.TessBaseAPIGetUTF8Text(api))  # recognises, once: the words come from it
                return text, _words(lib, api)
            finally:
                lib.TessBaseAPIClear(api)

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                self._lib.TessBaseAPIEnd(self._api)
                self._lib.TessBaseAPIDelete(self._api)
                self._api = None


def _taken(lib, text: int | None) -> str:
    """A string Tesseract made, read and handed back."""
    if not text:
        return ""
    try:
        return ctypes.string_at(text).decode("utf-8", "replace")
    finally:
        lib.TessDeleteText(text)


WORD_LEVEL = 3  # tesseract's RIL_WORD


def _words(lib, api) -> list[tuple[str, tuple[int, int, int, int]]]:
    words = []
    result = lib.TessBaseAPIGetIterator(api)
    if not result:
        return words
    try:
        page = lib.TessResultIteratorGetPageIterator(result)
        box = [ctypes.c_int() for _ in range(4)]
        while True:
            word = _taken(lib, lib.TessResultIteratorGetUTF8Text(result, WORD_LEVEL))
            if word.strip() and lib.TessPageIteratorBoundingBox(page, WORD_LEVEL, *map(ctypes.byref, box)):
                words.append((word, tuple(b.value for b in box)))
            if not lib.TessResultIteratorNext(result, WORD_LEVEL):
                return words
    finally:
        lib.TessResultIteratorDelete(result)


_SHARED: Reader | None = None


def shared_reader() -> Reader:
    """The process's one engine: its models are loaded once, whichever index (rebuilt) asks."""
    global _SHARED
    if _SHARED is None:
        _SHARED = Reader()
    return _SHARED


def _han(text: str) -> str:
    return "".join(c for c in text if unicodedata.category(c) == "Lo")


class Names:
    """The catalog's names as words to look for: an item's English words (brand and goods: its name before the comma, not its size) and
    the pairs of characters of its Chinese name. An item is read when all of one or the other are."""

    def __init__(self, items: dict[str, dict]):
        self.words: dict[str, frozenset[str]] = {}
        self.pairs: dict[str, frozenset[str]] = {}
        self.characters: dict[str, frozenset[str]] = {}
        self.by_word: dict[str, set[str]] = {}
        self.first: dict[str, str] = {}
        for item_id, item in items.items():
            # The name before its size ("Swan green tea bags, 25 bags"): every pack of its kind has the size.
            english = frozenset(WORD.findall(item["name"].split(",")[0].upper()))
            han = _han(item.get("name_zh", ""))
            self.words[item_id] = english
            first = WORD.findall(item["name"].upper())
            if first:
                self.first[item_id] = first[0]
            self.pairs[item_id] = frozenset(han[i:i + 2] for i in range(len(han) - 1))
            self.characters[item_id] = frozenset(han)
            for word in english:
                self.by_word.setdefault(word, set()).add(item_id)
        self.vocabulary = sorted(self.by_word)
        self.all_pairs = frozenset().union(*self.pairs.values())

    def _read_words(self, text: str) -> set[str]:
        """The catalog's words in what was read: each word read taken as the catalog word it nearly is
        (OCR drops or swaps a letter: SVWAN for SWAN), and two words read run together split again."""
        found = set()
        for word in WORD.findall(text.upper()):
            if word in self.by_word:
                found.add(word)
                continue
            close = difflib.get_close_matches(word, self.vocabulary, n=1, cutoff=0.8)
            if close and len(word) >= 4:
                found.add(close[0])
        return found

    def _read_pairs(self, text: str) -> set[str]:
        han = _han(text)
        return {han[i:i + 2] for i in range(len(han) - 1)}

    def score(self, text: str, item_id: str) -> float:
        """1.0 when every English word of the item's name, or every pair of its Chinese name, was read.
        0.75 when its first word (the brand: names are "Brand goods, size") and all but one of the others were,
        and no other word of the catalog's, nor two characters of another name's Chinese that this one has not: a
        pack half hidden, or in glare, loses a word, and its brand and goods are still read; another brand's pack
        of the same goods reads as its own brand, never this one, and another pack of the same brand reads as its
        own goods ('GREAT WALL' and 长城绿茶 on its green tea is not its shampoo).
        Otherwise the share read, at most 0.5 (its goods alone are every brand's goods)."""
        words, pairs = self.words.get(item_id, frozenset()), self.pairs.get(item_id, frozenset())
        read_words, read_pairs = self._read_words(text), self._read_pairs(text)
        if (words and words <= read_words) or (pairs and pairs <= read_pairs):
            return 1.0
        brand = self.first.get(item_id)
        if (brand in read_words and len(words & read_words) >= max(2, len(words) - 1)
                and not read_words - words and not (read_pairs & self.all_pairs) - pairs):
            return 0.75
        shares = [len(words & read_words) / len(words) if words else 0.0,
                  len(pairs & read_pairs) / len(pairs) if pairs else 0.0]
        return 0.5 * max(shares)

    def where(self, words: list[tuple[str, tuple[int, int, int, int]]], item_id: str) -> list[tuple]:
        """The boxes of the words read (Reader.read_words) that are the item's name's, English or Chinese."""
        return [box for word, box in words
                if self._read_words(word) & self.words[item_id] or set(_han(word)) & self.characters[item_id]]

    def named(self, text: str) -> tuple[str | None, list[str]]:
        """The item whose whole name was read and nothing of another's beside it, or None when none was, or two
        were as fully; and every item fully read. A word of the catalog read beside a name says the print is
        of something else: 'CLOUD Green tea bags' is not Cloud green tea when another brand's green tea bags
        are in the catalog (and 'green tea bags' is read over 'green tea' when both are Swan's)."""
        read_words, read_pairs = self._read_words(text), self._read_pairs(text)
        candidates = set().union(*(self.by_word[w] for w in read_words)) if read_words else set()
        if read_pairs:
            candidates |= {i for i, p in self.pairs.items() if p and p <= read_pairs}
        full = [i for i in candidates if (self.words[i] and self.words[i] <= read_words)
                or (self.pairs[i] and self.pairs[i] <= read_pairs)]
        alone = [i for i in full
                 if not read_words - self.words[i] and not (read_pairs & self.all_pairs) - self.pairs[i]]
        return (alone[0] if len(alone) == 1 else None), sorted(full)
