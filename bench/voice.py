"""Benchmark (not a test): how well and how fast the default recognizer hears spoken commands.

    python bench/voice.py [--voices en-us+f3,en-us+m3] [--speeds 140,200] [--snr 10]
    python bench/voice.py --wake [--minutes 10]

The spoken test set: every phrasing of the intent table (daemons/assistant/intents.py), and sentences that are
no command (what the wearer says to someone else, or asks that the offline table cannot do), each spoken by
every espeak-ng voice at every speed, in the sim mic's quiet room and again with noise mixed in at --snr dB
(pink noise, seeded: steady background like traffic or a fan). Each is fed to the recognizer as shipped
(``open_stt("pocketsphinx")``, no LLM) in the mic's 20 ms blocks, as assistantd does, until it says the
speech ended (a command at its first pause, else its endpointer's end); then ``final()`` and the offline
grammar (``intents.parse``).

Printed per condition: words right (1 - word error rate over the command phrasings), intents right (the
phrasing's own action), refused ("didn't catch that"), false intents (a command heard as another action, and
a non-command heard as any action), and from the end of speech to the words: the wait (audio time after the
last spoken sample until the recognizer says the speech ended) plus the decode (wall clock on this machine,
from that block's arrival, with the blocks fed in real time: hear() says how), p50 and p90; then each
condition's whole set, every voice and speed together. Not in it: the bus hops and the card's paint, which
bench/feel.py's spoken row has.

With --wake, the wake phrase's ear (daemons/wake/spotter.py) instead: the phrase spoken by every voice at
every speed, quiet and in noise, between other sentences (detection rate); and --minutes of speech that is
not the phrase (every sentence above, read on and on in turn by every voice at every speed), quiet and in
noise, fed in 20 ms blocks as the spotter would hear it: false wakes, also per hour.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from daemons.assistant.intents import normalize, parse, phrasings  # noqa: E402
from daemons.assistant.stt import open_stt  # noqa: E402
from daemons.audio import simspeech  # noqa: E402
from daemons.audio.backends import quiet_room  # noqa: E402

RATE, BLOCK = 16000, 320
NOT_COMMANDS = [
    "who won the game last night", "what is the weather like", "call my mother", "set a timer for ten minutes",
    "how far is the station", "open the door please", "i think it is going to rain", "remind me to buy milk",
    "what is the capital of france", "turn off the lights", "where did i park my car", "play the radio",
    "send a message to john", "how tall is mount everest", "tell me a joke", "what day is it tomorrow",
    "the quick brown fox jumps over the lazy dog", "can you help me with my homework", "good morning how are you",
    "navigate to the nearest coffee shop", "what time does the store close", "take out the trash",
    "how much does it cost", "stop it", "record the meeting",
]


def pink_noise(samples: int, seed: int = 32) -> np.ndarray:
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(samples))
    spectrum /= np.sqrt(np.maximum(np.arange(len(spectrum)), 1))
    noise = np.fft.irfft(spectrum, samples)
    return (noise / np.abs(noise).max() * 8000).astype(np.int16)


def word_errors(said: str, heard: str) -> int:
    from daemons.assistant.stt import edits  # the recognizer's own count of edits, over words here

    return edits(said.split(), heard.split())


def hear(stt, speech: np.ndarray, noise: np.ndarray | None, snr: float) -> tuple[str, float, float]:
    """(words, wait s, decode s) for ``speech`` as the mic hears it: the audio's time from the last spoken sample
    to the block after which the recognizer said the speech ended, and from that block's arrival to the words.
    Blocks arrive in real time and wait while the recognizer is busy (a decode at a pause that found no command
    holds up the blocks after it), so the decode includes any such wait, the block's own feed and final()."""
    lead, tail = np.zeros(RATE // 2, np.int16), np.zeros(2 * RATE, np.int16)
    pcm = np.concatenate([lead, speech, tail])
    if noise is not None:  # over the pauses too, at snr below the voiced part's power
        pcm = simspeech.with_noise(pcm, noise, snr)
    pcm = np.clip(pcm.astype(np.int32) + np.resize(quiet_room(RATE), len(pcm)), -32768, 32767).astype(np.int16)
    spoken_end = len(lead) + (simspeech.voiced_end(speech) or len(speech))  # espeak-ng's trailing pause is not speech
    busy_until = 0.0  # the recognizer's clock, in the audio's seconds
    for at in range(0, len(pcm), BLOCK):
        arrived = (at + BLOCK) / RATE
        started = time.perf_counter()
        stt.feed(pcm[at:at + BLOCK].tobytes(), RATE)
        if stt.ended:
            words = stt.final()
            done = max(busy_until, arrived) + time.perf_counter() - started
            return words, arrived - spoken_end / RATE, done - arrived
        busy_until = max(busy_until, arrived) + time.perf_counter() - started
    started = time.perf_counter()
    words = stt.final()  # the endpointer never ended it: the listen timeout would
    return words, float("nan"), time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", default="en-us+f3,en-us+m3")
    parser.add_argument("--speeds", default="140,200", help="words per minute")
    parser.add_argument("--snr", type=float, default=10.0)
    parser.add_argument("--show", action="store_true", help="print every miss")
    parser.add_argument("--wake", action="store_true", help="measure the wake phrase's ear instead")
    parser.add_argument("--minutes", type=float, default=10.0, help="of non-wake speech, with --wake")
    parser.add_argument("--only", choices=("quiet", "noise"), help="one condition alone (two runs side by side)")
    parser.add_argument("--threshold", type=float, help="the keyword search's threshold, with --wake (default: shipped)")
    parser.add_argument("--noisy-threshold", type=float, help="the same over a noisy floor, with --wake (default: shipped)")
    args = parser.parse_args()
    if args.wake:
        return wake(args)
    stt = open_stt("pocketsphinx")
    commands = [(action, phrase) for action, said in phrasings().items() for phrase in said]
    noise = pink_noise(RATE * 5)
    print(f"{len(commands)} command phrasings, {len(NOT_COMMANDS)} non-commands; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f} (shared machine: times are inflated by the others' work)")
    print(f"{'condition':34} {'words':>6} {'intents':>8} {'refused':>8} {'false(cmd)':>10} {'false(non)':>10} "
          f"{'wait p50':>9} {'decode p50':>10} {'total p50/p90':>14}")
    for noisy in (False, True):
        pooled = {"right": 0, "commands": 0, "false_cmd": 0, "false_non": 0, "non": 0, "totals": []}
        for voice in args.voices.split(","):
            for wpm in (int(s) for s in args.speeds.split(",")):
                errors = words_total = right = refused = false_cmd = false_non = 0
                totals, waits, decodes = [], [], []
                for action, phrase in commands:
                    speech = simspeech.speak(phrase, RATE, voice, wpm)
                    heard, waited, decode = hear(stt, speech, noise if noisy else None, args.snr)
                    errors += word_errors(normalize(phrase), heard)
                    words_total += len(phrase.split())
                    got = parse(heard).action if heard else None
                    right += got == action
                    refused += got is None or got == "unknown"
                    false_cmd += got not in (None, "unknown", action)
                    waits.append(waited)
                    decodes.append(decode)
                    totals.append(waited + decode)
                    if args.show and got != action:
                        print(f"   {phrase!r} heard {heard!r}")
                for sentence in NOT_COMMANDS:
                    heard, _, _ = hear(stt, simspeech.speak(sentence, RATE, voice, wpm), noise if noisy else None,
                                       args.snr)
                    got = parse(heard).action if heard else None
                    false_non += got not in (None, "unknown")
                    if args.show and got not in (None, "unknown"):
                        print(f"   (no command) {sentence!r} heard {heard!r} -> {got}")
                n = len(commands)
                name = f"{'noise ' + format(args.snr, 'g') + ' dB' if noisy else 'quiet'} {voice} {wpm} wpm"
                print(f"{name:34} {100 * (1 - errors / words_total):5.1f}% {100 * right / n:7.1f}% "
                      f"{refused:>8} {false_cmd:>10} {false_non:>7}/{len(NOT_COMMANDS)} "
                      f"{np.nanmedian(waits) * 1000:7.0f}ms {np.median(decodes) * 1000:8.0f}ms "
                      f"{np.nanmedian(totals) * 1000:6.0f}/{np.nanpercentile(totals, 90) * 1000:.0f}ms", flush=True)
                for key, value in (("right", right), ("commands", n), ("false_cmd", false_cmd),
                                   ("false_non", false_non), ("non", len(NOT_COMMANDS))):
                    pooled[key] += value
                pooled["totals"] += totals
        # The whole set of the condition: every voice and speed together, as the targets are stated
        name = f"{'noise ' + format(args.snr, 'g') + ' dB' if noisy else 'quiet'}, all"
        print(f"{name:34} {'':>6} {100 * pooled['right'] / pooled['commands']:7.1f}% {'':>8} "
              f"{pooled['false_cmd']:>10} {pooled['false_non']:>6}/{pooled['non']} {'':>9} {'':>10} "
              f"{np.nanmedian(pooled['totals']) * 1000:6.0f}/{np.nanpercentile(pooled['totals'], 90) * 1000:.0f}ms",
              flush=True)
    return 0


def wake(args) -> int:
    from daemons.wake.spotter import WakeSpotter

    spotter = WakeSpotter("hey lens", **({"threshold": args.threshold} if args.threshold else {}),
                          **({"noisy_threshold": args.noisy_threshold} if args.noisy_threshold else {}))
    voices = [(v, int(w)) for v in args.voices.split(",") for w in args.speeds.split(",")]
    noise = pink_noise(RATE * 5)
    print(f"wake phrase 'hey lens', window {len(spotter.window) / RATE} s; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")

    def feed(pcm: np.ndarray, noisy: bool) -> int:
        if noisy:
            pcm = simspeech.with_noise(pcm, noise, args.snr)
        pcm = np.clip(pcm.astype(np.int32) + np.resize(quiet_room(RATE), len(pcm)), -32768, 32767).astype(np.int16)
        return sum(spotter.feed(pcm[at:at + BLOCK].tobytes()) for at in range(0, len(pcm), BLOCK))

    others = [p for said in phrasings().values() for p in said] + NOT_COMMANDS
    pause = np.zeros(RATE // 2, np.int16)
    for noisy in [c == "noise" for c in ([args.only] if args.only else ("quiet", "noise"))]:
        hits = tries = 0
        for voice, wpm in voices:
            for before in NOT_COMMANDS[:6]:  # the phrase after something else, then a request after it
                spotter.clear()
                pcm = np.concatenate([simspeech.speak(before, RATE, voice, wpm), pause,
                                      simspeech.speak("hey lens", RATE, voice, wpm),
                                      simspeech.speak("what time is it", RATE, voice, wpm), pause])
                hits += feed(pcm, noisy) >= 1
                tries += 1
        spotter.clear()
        seconds = wakes = 0.0
        started = time.perf_counter()
        turn = 0
        while seconds < args.minutes * 60:
            voice, wpm = voices[turn % len(voices)]
            pcm = np.concatenate([simspeech.speak(others[turn % len(others)], RATE, voice, wpm), pause])
            wakes += feed(pcm, noisy)
            seconds += len(pcm) / RATE
            turn += 1
        cpu = time.perf_counter() - started
        print(f"{'noise ' + format(args.snr, 'g') + ' dB' if noisy else 'quiet':12} detected {hits}/{tries} "
              f"({100 * hits / tries:.0f} %); false wakes {wakes:.0f} in {seconds / 60:.1f} min of other speech "
              f"({wakes * 3600 / seconds:.1f}/h); {100 * cpu / seconds:.0f} % of a core (synthesis included)",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
