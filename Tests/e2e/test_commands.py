"""Commands: what users ran, read off the emulated screen, checked against what the shell on
the asset actually executed; deny rules that keep a command from running."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from conftest import OS_USER, run
from test_records import cli, sessions, wait_for

ESC = "\x1b"


def commands_of(gw, session_id):
    shown = json.loads(cli(gw, "sessions", "show", session_id, "--json").out)
    return shown["commands"]


def test_extracted_commands_match_what_the_shell_executed(make_gateway, tmp_path):
    gw = make_gateway()
    truth = tmp_path / "truth.txt"
    truth.touch()
    truth.chmod(0o666)
    # A real terminal type: with TERM=dumb readline scrolls long lines sideways instead of wrapping.
    term = gw.spawn("alice@web01", dimensions=(24, 80), term="xterm")
    term.start_shell()
    # Ground truth on the asset: bash appends each line it runs to a file (the history
    # entry, after it was read), set up with leading spaces so these setup lines stay out.
    term.type(f" HISTCONTROL=ignorespace; HISTFILE=/dev/null; PROMPT_COMMAND='history 1 >> {truth}'")
    term.expect_prompt()
    time.sleep(0.3)

    def line(keys, wait=True):
        term.send(keys)
        if wait:
            term.expect_prompt()
        time.sleep(0.15)

    line("echo one\r")                                   # plain
    line("echo twx\x7fo\r")                              # backspace edit
    line("echo zthree\x1b[D\x1b[D\x1b[D\x1b[D\x1b[D\x7f\r")  # cursor moves, delete inside the line
    line("ech\t four\r")                                 # tab completion
    line(f"{ESC}[A\r")                                   # history recall (up arrow)
    line("\x12one\r")                                    # Ctrl-R search
    line("echo abandoned\x03", wait=True)                # Ctrl-C on a half-typed line
    line("echo p1\recho p2\r")                           # multi-line paste
    term.expect_prompt()
    line("printf '\\033[?1049h'; read -r x; printf '\\033[?1049l'\r", wait=False)  # full-screen program
    time.sleep(0.5)
    term.send("typed inside the full screen\r")
    term.expect_prompt()
    time.sleep(0.15)
    line("read -rs -p 'Password: ' pw; echo\r", wait=False)  # password prompt, no echo
    term.expect("Password: ")
    term.send("hunter2\r")
    term.expect_prompt()
    time.sleep(0.15)
    long_arg = "x" * 150
    line(f"echo {long_arg}\r")                           # wraps past 80 columns
    term.send("PS1='new> '\r")                           # a program that changes the prompt
    term.expect("new> ")
    time.sleep(0.15)
    term.send("echo after-prompt\r")
    term.expect("after-prompt\r\n")
    term.expect("new> ")
    term.type("exit")
    term.wait_exit()

    s = wait_for(gw, lambda x: x["state"] != "online" and x["asset"] == "web01", "finished")
    extracted = [c["command"] for c in commands_of(gw, s["id"])]
    # Compare from the line that set up the ground truth on (start_shell's PS1 line came before).
    setup = next(i for i, c in enumerate(extracted) if c.startswith("HISTCONTROL="))
    extracted = extracted[setup:]
    # PROMPT_COMMAND repeats the last entry when a line added no history (the Ctrl-C, the
    # empty line after the password): keep each history number once.
    seen, truth_cmds = set(), []
    for raw in truth.read_text().splitlines():
        number, _, cmd = raw.strip().partition(" ")
        if number in seen:
            continue
        seen.add(number)
        truth_cmds.append(cmd.strip())
    truth_cmds = [c for c in truth_cmds if c] + ["exit"]  # exit runs no PROMPT_COMMAND after it
    extracted_set = list(extracted)
    hits = 0
    for c in truth_cmds:
        if c in extracted_set:
            extracted_set.remove(c)
            hits += 1
    recall = hits / len(truth_cmds)
    precision = hits / len(extracted) if extracted else 0.0
    report = (f"precision {precision:.2f} recall {recall:.2f} over {len(truth_cmds)} executed lines\n"
              f"executed:  {truth_cmds}\nextracted: {extracted}")
    print(report)
    assert "echo abandoned" not in extracted
    assert "hunter2" not in " ".join(extracted)
    assert "typed inside the full screen" not in extracted
    assert recall >= 0.9 and precision >= 0.9, report


def test_deny_rule_keeps_the_command_from_running_and_records_the_attempt(make_gateway, tmp_path):
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep").write_text("still here")
    gw = make_gateway(command_rules=[{"pattern": r"rm\s+-rf\s+/tmp/", "action": "deny"},
                                     {"pattern": r"^reboot", "action": "warn"}])
    term = gw.spawn("alice@web01", dimensions=(24, 100))
    term.start_shell()
    term.type(f"rm -rf {victim}")
    term.expect("command blocked by rule #1", what="the block notice")
    term.expect_prompt()
    term.type("echo still-alive")
    term.expect("still-alive")
    term.expect_prompt()
    term.type("exit")
    term.wait_exit()
    assert (victim / "keep").read_text() == "still here"

    # exec: refused before it reaches the asset
    r = gw.ssh("alice@web01", f"rm -rf {victim}")
    assert r.rc != 0 and "command blocked by rule #1" in r.err
    assert (victim / "keep").exists()

    found = json.loads(cli(gw, "commands", "search", "rm -rf", "--json").out)
    assert len(found) == 2, found
    assert {c["risk"] for c in found} == {"denied"}
    assert all(c["rule"].startswith("#1 ") for c in found)
    assert all(c["user"] == "alice" and c["asset"] == "web01" for c in found)
    r = cli(gw, "commands", "search", "still-alive")
    assert r.rc == 0 and "still-alive" in r.out


def test_exec_records_its_command_with_output_and_a_marker(gateway, tmp_path):
    r = gateway.ssh("alice@web01", "echo marker-$((40+2)); echo second-line")
    assert r.rc == 0
    s = wait_for(gateway, lambda x: x["program"].startswith("exec: echo marker-") and x["state"] != "online", "exec")
    [c] = commands_of(gateway, s["id"])
    assert c["command"] == "echo marker-$((40+2)); echo second-line"
    assert c["output"].splitlines()[:2] == ["marker-42", "second-line"]
    assert c["risk"] == "normal"
    cast = run([str(gateway.binary), "sessions", "export", s["id"], "--config", str(gateway.config_path)], timeout=30).out
    markers = [json.loads(l) for l in cast.splitlines()[1:] if '"m"' in l]
    assert markers and markers[0][2] == c["command"]
    assert abs(markers[0][0] - c["offset_seconds"]) < 0.01
