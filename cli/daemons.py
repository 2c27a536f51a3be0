"""`lens power ...`, `lens led ...`, `lens input ...` poke the simulated hardware from a terminal;
`lens display snapshot` saves what the wearer sees; `lens say TEXT` talks to the assistant; `lens mic say TEXT`
speaks into the simulated mic."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from cli.connect import tool_node
from bus.waiting import wait_for

SESSION_END_S = 30.0  # `lens say --trace`: the answer's card stays up for seconds after it is shown


def add_parsers(commands) -> None:
    power = commands.add_parser("power", help="simulated batteries: pull, insert, charge",
                                description="Drive powerd's simulated backend (a swap, a drained battery).")
    power_cmds = power.add_subparsers(dest="power_command", metavar="COMMAND", required=True)
    for action, text in (("pull", "take a battery out"), ("insert", "put a battery back")):
        p = power_cmds.add_parser(action, help=text, description=f"{text.capitalize()} (sim backend).")
        p.add_argument("battery", choices=("left", "right"))
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_power)
    p = power_cmds.add_parser("charge", help="set a battery's charge", description="Set a battery's charge "
                              "in percent (sim backend), e.g. to see low_power or critical.")
    p.add_argument("battery", choices=("left", "right", "bridge"))
    p.add_argument("percent", type=float)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_power)

    led = commands.add_parser("led", help="the simulated capture LED: break it, mend it",
                              description="Make ledd's simulated LED fail (to see capture stop) or work again.")
    led_cmds = led.add_subparsers(dest="led_command", metavar="COMMAND", required=True)
    p = led_cmds.add_parser("fault", help="break the LED", description="Break the simulated LED with a reason.")
    p.add_argument("reason", nargs="?", default="simulated fault")
    p.set_defaults(func=cmd_led)
    p = led_cmds.add_parser("mend", help="make the LED work again", description="Mend the simulated LED.")
    p.set_defaults(func=cmd_led)

    gesture = commands.add_parser("input", help="simulated touchpad and button: tap, swipe, press",
                                  description="Play a gesture on inputd's simulated touchpad or button; it goes "
                                              "through the same recognizer as the board's events.")
    gesture_cmds = gesture.add_subparsers(dest="gesture", metavar="GESTURE", required=True)
    for name, (gesture_name, text) in INPUT_GESTURES.items():
        p = gesture_cmds.add_parser(name, help=text, description=f"{text.capitalize()} (sim backend).")
        p.set_defaults(func=cmd_input, gesture_name=gesture_name)

    display = commands.add_parser("display", help="what the wearer sees: snapshot",
                                  description="Look at displayd's panel (any backend but G1's none).")
    display_cmds = display.add_subparsers(dest="display_command", metavar="COMMAND", required=True)
    p = display_cmds.add_parser("snapshot", help="save what the wearer sees now as a PNG",
                                description="Save the panel's current frame, read back from the panel, as a PNG.")
    p.add_argument("-o", "--output", metavar="FILE.png", required=True)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_display)

    camera = commands.add_parser("camera", help="the simulated camera: hold a picture in front of it",
                                 description="What camerad's sim backend sees (the lens app's items, say).")
    camera_cmds = camera.add_subparsers(dest="camera_command", metavar="COMMAND", required=True)
    p = camera_cmds.add_parser("show", help="show the camera a picture (or, without one, its pattern again)",
                               description="The sim camera's frames become this PNG or JPEG as a camera sees it "
                                           "held up: fitted into the frame and centred, never stretched, until "
                                           "told otherwise; without FILE, its pattern or folder again.")
    p.add_argument("image", nargs="?", metavar="FILE")
    p.add_argument("--scale", type=float, default=1.0, metavar="K", help="size as a share of the fit (0.05..4)")
    p.add_argument("--rotate", type=float, default=0.0, metavar="DEG", help="turn it anticlockwise")
    p.add_argument("--tilt", type=float, default=0.0, metavar="DEG",
                   help="tilt it away about its upright axis (-80..80)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_camera)

    mic = commands.add_parser("mic", help="the simulated mic: speak into it, play a WAV into it",
                              description="What audiod's simulated mic hears, once, when it is next open (at once "
                                          "if it is): a sentence spoken by espeak-ng or a WAV file. With --hold, "
                                          "the temple is held first and the assistant's answer printed.")
    mic_cmds = mic.add_subparsers(dest="mic_command", metavar="COMMAND", required=True)
    for name, text in (("say", "speak a sentence into the mic (espeak-ng)"), ("play", "play a WAV into the mic")):
        p = mic_cmds.add_parser(name, help=text, description=f"{text.capitalize()} (sim backend).")
        if name == "say":
            p.add_argument("text", nargs="+")
            p.add_argument("--voice", help="an espeak-ng voice (default en-us+f3)")
            p.add_argument("--wpm", type=int, help="words per minute (default 160)")
        else:
            p.add_argument("wav", metavar="FILE.wav")
        p.add_argument("--hold", action="store_true", help="hold the temple first, then print the answer")
        p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="wait this long for the answer")
        p.add_argument("--json", action="store_true")
        p.set_defaults(func=cmd_mic)

    notify = commands.add_parser("notify", help="a notification from the (simulated) phone",
                                 description="Publish phone.notification as the phone bridge would.")
    notify.add_argument("title")
    notify.add_argument("body", nargs="?")
    notify.add_argument("--from", dest="source", default="Messages", metavar="APP", help="the phone app it is from")
    notify.set_defaults(func=cmd_notify)

    say = commands.add_parser("say", help="say something to the assistant and print its answer",
                              description="What the wearer says, for the development speech-to-text: "
                                          "\"hey lens, what time is it\", or any request on its own (as if the "
                                          "temple was held). Waits for the answer.")
    say.add_argument("text", nargs="+")
    say.add_argument("--timeout", type=float, default=30.0, metavar="S", help="wait this long for the answer")
    say.add_argument("--json", action="store_true")
    say.add_argument("--trace", action="store_true",
                     help="then print where the time went: every process's hops of this question (lens trace)")
    say.set_defaults(func=cmd_say)


# command word -> (gesture on the bus, what it does)
INPUT_GESTURES = {
    "tap": ("tap", "tap the temple"),
    "double": ("double_tap", "tap twice"),
    "long": ("long_press", "touch and hold"),
    "swipe-fwd": ("swipe_forward", "swipe forward along the temple"),
    "swipe-back": ("swipe_back", "swipe back along the temple"),
    "button": ("button", "press the capture button"),
    "button-long": ("button_long", "hold the capture button"),
}


def _ask(args, topic: str, **fields) -> dict:
    with tool_node(args.command, args.runtime_dir) as node:
        return node.request(topic, timeout=3.0, **fields)


def cmd_power(args) -> int:
    result = _ask(args, "power.sim.request", action=args.power_command, battery=args.battery,
                  percent=getattr(args, "percent", None))
    present = ", ".join(f"{side} {'in' if p else 'OUT'}" for side, p in zip(("left", "right"), result["present"]))
    print(json.dumps(result) if args.json else present)
    return 0


def cmd_led(args) -> int:
    fault = args.reason if args.led_command == "fault" else None
    result = _ask(args, "led.sim.request", fault=fault)
    print(f"LED fault: {result['fault']}" if result["fault"] else "LED working")
    return 0


def cmd_camera(args) -> int:
    image = str(Path(args.image).resolve()) if args.image else None  # camerad's working directory is not ours
    result = _ask(args, "camera.sim.request", image=image, scale=args.scale, rotate=args.rotate, tilt=args.tilt)
    print(json.dumps(result) if args.json else f"the camera sees {result['showing']}")
    return 0


def cmd_input(args) -> int:
    result = _ask(args, "input.sim.request", gesture=args.gesture_name)
    print(f"{args.gesture_name}: {result['events']} raw events played")
    return 0


def cmd_display(args) -> int:
    result = _ask(args, "display.snapshot.request")
    with open(args.output, "wb") as out:
        out.write(result["png"])
    info = {"path": args.output, "width": result["width"], "height": result["height"], "frames": result["frames"]}
    print(json.dumps(info) if args.json else f"{args.output}: {info['width']}x{info['height']}, "
                                             f"frame {info['frames']}")
    return 0


def cmd_say(args) -> int:
    from bus.tracing import new_trace
    from bustools.timeline import Collector

    answers: list[dict] = []
    collector = Collector(0)
    trace = new_trace()  # its own, so that its hops can be told from the rest (--trace)
    with tool_node("say", args.runtime_dir) as node:
        node.subscribe("assistant.answer", lambda msg: answers.append(msg.payload))
        if args.trace:
            node.subscribe("", lambda msg: msg.trace == trace and collector.add(msg, 0), from_anyone=True)
        node.start()
        with node.tracing(trace):
            session = node.request("assistant.say.request", timeout=3.0, text=" ".join(args.text))["session"]
        try:
            answer = wait_for(lambda: next((a for a in answers if a["session"] == session), None), args.timeout,
                              "the assistant's answer", poll=node.run_once)
        except TimeoutError as exc:
            print(f"lens say: {exc}")
            return 1
        if args.trace:  # after the answer: its speech, the LED's hold, the card's time up, the session's end
            try:
                wait_for(lambda: _over(collector, trace), SESSION_END_S, "the session's end", poll=node.run_once)
                node.run_once(0.3)  # the display's last frame and state follow the release
            except TimeoutError:
                print(f"lens say: the session did not end within {SESSION_END_S:g} s; its hops so far:",
                      file=sys.stderr)
    print(json.dumps(answer) if args.json else answer["text"])
    if args.trace:
        timeline = collector.complete(1)[0]
        print(json.dumps(timeline.as_json()) if args.json else "\n".join(timeline.lines()))
    return 0 if answer["status"] == "answered" else 1


def _over(collector, trace: int) -> bool:
    """The assistant is idle again in this trace: the session's last hop."""
    hops = collector.open.get(trace)
    return hops is not None and any(m.topic == "assistant.state" and m.payload["phase"] == "idle"
                                    for m in hops.messages)


def cmd_mic(args) -> int:
    if args.mic_command == "say":
        fields = {"text": " ".join(args.text), "voice": args.voice, "wpm": args.wpm}
    else:
        fields = {"wav": str(Path(args.wav).resolve())}  # audiod's working directory is not ours
    answers: list[dict] = []
    with tool_node("mic", args.runtime_dir) as node:
        node.subscribe("assistant.answer", lambda msg: answers.append(msg.payload))
        node.start()
        if args.hold:  # the speech waits for the capture the held temple starts, not the spotter's ear before it
            fields["when"] = "capture"
            node.request("input.sim.request", timeout=3.0, gesture="long_press")
        spoken = node.request("audio.sim.mic.request", timeout=10.0, **fields)
        if not args.hold:
            print(json.dumps(spoken) if args.json else f"{spoken['length_s']:.1f} s into the mic"
                  + ("" if spoken["open"] else " (it plays when the mic is next open)"))
            return 0
        try:
            answer = wait_for(lambda: answers[0] if answers else None, args.timeout, "the assistant's answer",
                              poll=node.run_once)
        except TimeoutError as exc:
            print(f"lens mic: {exc}")
            return 1
    print(json.dumps(answer) if args.json else answer["text"])
    return 0 if answer["status"] == "answered" else 1


def cmd_notify(args) -> int:
    import uuid

    with tool_node("notify", args.runtime_dir) as node:
        node.start()
        node.publish("phone.notification", id=uuid.uuid4().hex[:8], source=args.source, title=args.title,
                     body=args.body)
    print(f"{args.source}: {args.title}")
    return 0
