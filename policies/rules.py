"""The policy files' rules: every key the shell and the daemons read, declared once, with its type, its range
and what it means. Nothing has a default in code: a policy directory says everything (policies.loader)."""

from __future__ import annotations

from policies.checker import Rule

RESOURCES = ("display", "audio_out", "mic", "camera")
GESTURES = ("tap", "double_tap", "long_press", "swipe_forward", "swipe_back", "button", "button_long")
MODELS = ("s1", "g1")
WAKE_LISTENING = ("off", "development", "on")  # assistant.toml [wake] listen


def _fraction(doc: str) -> Rule:
    return Rule("float", 0.0, 1.0, doc=doc)


# file -> section -> key -> Rule. A section that is a Rule instead of a dict
# is an open table: any key, every value checked against that rule.
SCHEMA: dict[str, dict[str, dict[str, Rule] | Rule]] = {
    "system.toml": {
        "boot": {
            "required": Rule("list[str]", doc="daemons that must report ready before the shell leaves booting"),
            "deadline_s": Rule("float", 0.1, 300.0, doc="how long to wait for them before running degraded"),
        },
        "idle": {
            "dim_after_s": Rule("float", 1.0, 3600.0, doc="no input for this long: active -> idle"),
            "sleep_after_s": Rule("float", 1.0, 86400.0, doc="idle for this much longer: sleep"),
            "idle_brightness": _fraction("display brightness while idle"),
        },
        "power": {
            "low_percent": Rule("int", 1, 99, doc="below this: low_power"),
            "recover_percent": Rule("int", 1, 100, doc="leave low_power above this"),
            "critical_percent": Rule("int", 0, 50, doc="below this: critical, orderly shutdown"),
            "low_power_brightness": _fraction("display brightness in low_power"),
        },
        "swap": {
            "brightness": _fraction("display brightness while a battery is out"),
            "bridge_low_s": Rule("float", 1.0, 600.0, doc="bridge seconds left that trigger critical"),
        },
        "apps": {
            "boot": Rule("list[str]", doc="apps appd starts at boot (those the model hides are skipped)"),
            "home": Rule("str", doc="the resting app, in front when no other app is"),
            "first_uid": Rule("int", 1000, 4_000_000_000, doc="the first of the users apps run as, one each"),
            "uids": Rule("int", 1, 65536, doc="how many users there are for apps (at most this many run)"),
        },
    },
    "focus.toml": {
        "priorities": Rule("int", 0, 1000, doc="priority of each class; higher wins"),
        "roles": Rule("str", doc="the highest class a process may claim"),
        "liveness": {
            "heartbeat_timeout_s": Rule("float", 0.1, 60.0,
                                        doc="a silent owner loses focus after this (or 3 of its heartbeat periods)"),
        },
        "ducking": {"level": _fraction("volume a ducked audio owner keeps")},
    },
    "privacy.toml": {
        "led": {
            "hold_s": Rule("float", 0.0, 60.0, doc="LED stays lit this long after the last capture"),
            "confirm_timeout_s": Rule("float", 0.05, 10.0, doc="wait this long for the LED to confirm"),
        },
        "bridge": {
            "out": Rule("list[str]", doc="topic prefixes a paired phone or laptop may see (`lens bus bridge`)"),
            "in": Rule("list[str]", doc="topic prefixes it may publish onto the glasses' bus"),
        },
    },
    "assistant.toml": {
        "trigger": {
            "gestures": Rule("list[str]", choices=GESTURES, doc="temple gestures that start the assistant"),
            "wake_phrase": Rule("str", doc="said first, it wakes the glasses and the assistant"),
        },
        "wake": {
            "listen": Rule("str", choices=WAKE_LISTENING,
                           doc="whether the wake-phrase spotter hears the mic while nobody captures it: off, on, "
                               "or development (only under `lens up`, never on a product image)"),
        },
        "listen": {
            "stt": Rule("str", choices=("pocketsphinx", "text", "vosk"), doc="the speech-to-text engine"),
            "vosk_model_dir": Rule("str", doc="Vosk's model directory (stt = vosk)"),
            "timeout_s": Rule("float", 1.0, 60.0, doc="stop listening after this long without a request"),
            "grant_timeout_s": Rule("float", 0.1, 30.0, doc="wait this long for the mic to be granted"),
        },
        "answer": {
            "card_s": Rule("float", 1.0, 120.0, doc="how long an answer card stays up"),
            "context_s": Rule("float", 0.0, 86400.0, doc="the conversation is forgotten after this long"),
        },
        "llm": {
            "endpoint": Rule("str", doc="OpenAI-compatible base URL ('' for offline only)"),
            "model": Rule("str", doc="the model name the endpoint expects"),
            "api_key_env": Rule("str", doc="environment variable holding the API key"),
            "timeout_s": Rule("float", 0.1, 120.0, doc="no progress for this long: answer offline"),
            "max_rounds": Rule("int", 1, 10, doc="tool-call rounds before the model must answer"),
        },
    },
    "hardware.toml": {
        "led": {
            "sysfs_dir": Rule("str", doc="the capture LED's /sys/class/leds/<name> directory (real backend)"),
            "confirm_retries": Rule("int", 0, 10, doc="writes retried before a read-back mismatch is a fault"),
            "check_s": Rule("float", 0.05, 60.0, doc="while lit, the LED is read back this often"),
        },
        "power": {
            "sysfs_root": Rule("str", doc="where the power supplies are (real backend)"),
            "batteries": Rule("list[str]", doc="supply names of the swappable batteries, left first"),
            "bridge": Rule("str", doc="supply name of the internal bridge battery"),
            "poll_s": Rule("float", 0.005, 60.0, doc="the supplies are read this often"),
            "low_percent": Rule("int", 1, 99, doc="a battery below this raises a 'low' event"),
        },
        "camera": {
            "device": Rule("str", doc="the V4L2 capture device (real backend)"),
            "width": Rule("int", 16, 7680, doc="frame width in pixels (even: YUYV pairs pixels)"),
            "height": Rule("int", 16, 4320, doc="frame height in pixels"),
            "fps": Rule("float", 1.0, 120.0, doc="frames per second while recording video"),
            "preview_fps": Rule("float", 0.5, 60.0, doc="frames per second in preview"),
            "slots": Rule("int", 2, 64, doc="frames the shared-memory ring holds"),
            "sim_folder": Rule("str", doc="sim backend: show these images instead of the pattern ('' for none)"),
            "jpeg_quality": Rule("int", 10, 100, doc="quality of photos and recording segments"),
            "media_dir": Rule("str", doc="where photos and recordings go ('' for camerad's state directory)"),
        },
        "input": {
            "touchpad": Rule("str", doc="the temple touchpad's evdev device ('' for none; real backend)"),
            "button": Rule("str", doc="the capture button's evdev device ('' for none; real backend)"),
            "button_key": Rule("str", doc="the button's key name (KEY_...)"),
            "tap_max_s": Rule("float", 0.02, 2.0, doc="a touch longer than this is not a tap"),
            "double_s": Rule("float", 0.05, 2.0, doc="a second tap within this is a double tap"),
            "long_s": Rule("float", 0.1, 5.0, doc="held still this long: long press"),
            "slop": _fraction("movement that still counts as still"),
            "swipe_min": _fraction("movement that makes a swipe"),
            "swipe_max_s": Rule("float", 0.05, 5.0, doc="a slower movement is a drag"),
            "debounce_s": Rule("float", 0.0, 0.2, doc="a shorter lift is a bounce"),
            "forward_increasing": Rule("bool", doc="whether larger x is forward"),
        },
        "display": {
            "fb_device": Rule("str", doc="the panel's framebuffer device (real backend)"),
            "fb_bits_per_pixel": Rule("int", 16, 32, doc="pixel size when fb_device is a plain file (16 or 32)"),
            "backlight_dir": Rule("str", doc="the panel's /sys/class/backlight/<name> ('' to dim the pixels)"),
            "font": Rule("str", doc="TrueType font of the HUD and cards"),
            "cards_per_app": Rule("int", 1, 100, doc="cards kept per app"),
        },
        "audio": {
            "out_device": Rule("str", doc="PortAudio output device name ('' for the default; real backend)"),
            "in_device": Rule("str", doc="PortAudio input device name ('' for the default; real backend)"),
            "out_rate": Rule("int", 8000, 96000, doc="speaker sample rate"),
            "mic_rate": Rule("int", 8000, 48000, doc="mic sample rate"),
            "block_s": Rule("float", 0.005, 0.2, doc="samples per device block, in seconds"),
            "ramp_s": Rule("float", 0.001, 1.0, doc="a full 0..1 gain swing takes this long"),
            "volume": _fraction("master volume"),
            "voice": Rule("str", choices=("espeak-ng", "tones"), doc="the speech engine"),
            "voice_name": Rule("str", doc="the engine's voice (espeak-ng -v)"),
            "words_per_minute": Rule("int", 80, 450, doc="speaking rate"),
            "vad_threshold_db": Rule("float", -100.0, 0.0, doc="speech is louder than this (dBFS)"),
            "vad_margin_db": Rule("float", 0.0, 60.0, doc="and this much above the noise floor"),
            "vad_start_s": Rule("float", 0.0, 2.0, doc="for this long, to start"),
            "vad_hang_s": Rule("float", 0.0, 5.0, doc="quiet this long ends speech"),
            "sim_mic_wav": Rule("str", doc="sim backend: the mic plays this WAV in a loop ('' for a quiet room)"),
        },
        "power_sim": {
            "battery_wh": Rule("float", 0.01, 100.0, doc="energy of one full swappable battery"),
            "bridge_wh": Rule("float", 0.001, 10.0, doc="energy of the full bridge battery"),
            "base_w": Rule("float", 0.0, 20.0, doc="draw of the board with everything idle"),
            "display_w": Rule("float", 0.0, 20.0, doc="extra draw of the display at full brightness"),
            "camera_w": Rule("float", 0.0, 20.0, doc="extra draw while the camera captures"),
            "mic_w": Rule("float", 0.0, 20.0, doc="extra draw while the mic captures"),
            "speedup": Rule("float", 1.0, 100000.0, doc="simulated seconds per real second"),
        },
    },
}
MODEL_SCHEMA: dict[str, dict[str, Rule]] = {
    "model": {
        "name": Rule("str", doc="as shown to the wearer"),
        "display": Rule("bool", doc="whether the glasses have a display"),
        "resources": Rule("list[str]", choices=RESOURCES, doc="resources focus is arbitrated for"),
        "batteries": Rule("int", 1, 4, doc="swappable batteries"),
        "panel_width": Rule("int", 0, 7680, doc="panel pixels across (0 without a display)"),
        "panel_height": Rule("int", 0, 4320, doc="panel pixels down (0 without a display)"),
        "refresh_hz": Rule("int", 0, 240, doc="panel refresh: displayd renders at most this often"),
    },
}
REQUIRED_CLASSES = ("system_alert", "foreground", "background")
