import Foundation

/// Finds the commands a user runs in an interactive shell, reading each command line off an
/// emulated screen rather than from keystrokes: what the shell received, after readline
/// editing, completion and history recall (see docs/decisions/0005-command-extraction.md).
///
/// Fed on the session's queue: `input` before the user's bytes go to the asset (it may hold
/// back an Enter that a `deny` rule forbids), `output` with what the user's terminal got.
public final class CommandExtractor {
    public struct Options: Sendable {
        /// Lines of each command's output kept with it.
        public var outputLines = 20
        /// Bytes of output kept per command, before lines are cut.
        public var outputBytes = 16 * 1024
        /// Output after an Enter without a line end: stop waiting for the echo (Warpgate's bound).
        public var echoLimit = 2048
        public init() {}
    }

    /// Told when a command starts (returns its offset into the recording, i.e. where the
    /// marker went) and when it is complete with its output.
    public struct Hooks {
        public var started: (_ command: String, _ verdict: CommandPolicy.Verdict) -> Double
        public var finished: (_ record: Extracted) -> Void
        public init(started: @escaping (String, CommandPolicy.Verdict) -> Double, finished: @escaping (Extracted) -> Void) {
            self.started = started
            self.finished = finished
        }
    }

    public struct Extracted: Sendable, Equatable {
        public var time: Date
        public var offset: Double
        public var command: String
        public var output: String
        public var verdict: CommandPolicy.Verdict
    }

    /// What the relay should do with a chunk of the user's input.
    public struct InputDecision: Sendable, Equatable {
        /// Bytes to send to the asset instead of the chunk.
        public var forward: [UInt8]
        /// Set when a rule stopped a command: tell the user this.
        public var blockedNotice: String?
    }

    private enum State {
        case idle
        case typing(boundary: TerminalScreen.Position, scroll: Int)
        /// `lineEnd`: where the cursor was before a CR in the output; a LF right after it
        /// confirms the shell accepted the line (a CR alone is a redraw or a wrap).
        case awaitingEcho(boundary: TerminalScreen.Position, scroll: Int, verdict: CommandPolicy.Verdict, seen: Int,
                          lineEnd: TerminalScreen.Position?)
        case running
    }

    private var screen: TerminalScreen
    private let policy: CommandPolicy
    private let options: Options
    private let hooks: Hooks
    private var state: State = .idle
    private var current: Extracted?
    private var captured: [UInt8] = []
    /// Printable input typed ahead of the shell (a multi-line paste), for the lines after the first.
    private var typeahead: [UInt8] = []
    private var typeaheadClean = true
    /// Printable bytes typed since the last output: not on the screen yet. An Enter in the
    /// same chunk as the text (a fast typist, a paste, a script) is judged with them.
    private var unechoed: [UInt8] = []
    /// Lines pasted after the one awaiting its echo; recorded once that one has started.
    private var queued: [(String, CommandPolicy.Verdict)] = []

    public init(columns: Int, rows: Int, policy: CommandPolicy, options: Options = Options(), hooks: Hooks) {
        screen = TerminalScreen(columns: columns, rows: rows)
        self.policy = policy
        self.options = options
        self.hooks = hooks
    }

    /// The emulated screen as the user sees it now (for live watchers).
    public var currentScreen: TerminalScreen { screen }

    // MARK: Input

    public func input(_ bytes: [UInt8]) -> InputDecision {
        var forward: [UInt8] = []
        forward.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            i += 1
            if screen.isAlternateScreen {
                forward.append(b)
                continue
            }
            let isEnter = b == 0x0D || b == 0x0A
            switch state {
            case .idle:
                if !isEnter && b != 0x03 && b != 0x04 {
                    state = .typing(boundary: screen.cursor, scroll: screen.scrollCount)
                    unechoed = []
                    noteTyped(b)
                }
                forward.append(b)
            case .running:
                if !isEnter && b != 0x03 && b != 0x04 {
                    finishCurrent()
                    state = .typing(boundary: screen.cursor, scroll: screen.scrollCount)
                    unechoed = []
                    noteTyped(b)
                }
                forward.append(b)
            case let .typing(boundary, scroll):
                if b == 0x03 {
                    state = .idle
                    forward.append(b)
                } else if isEnter {
                    var line = lineText(from: boundary, scroll: scroll, toEndOfLine: true)
                    if !unechoed.isEmpty { line += String(decoding: unechoed, as: UTF8.self) }
                    unechoed = []
                    let verdict = policy.judge(line.trimmingCharacters(in: .whitespaces))
                    if verdict.denied {
                        // The Enter never reaches the asset; the shell clears its line and redraws
                        // its prompt (Ctrl-E Ctrl-U, then an empty line).
                        forward += [0x05, 0x15, 0x0D]
                        record(line, verdict: verdict, output: "")
                        state = .idle
                        return InputDecision(forward: forward, blockedNotice: "command blocked by rule \(verdict.rule ?? "?"): \(Self.printable(line))")
                    }
                    forward.append(b)
                    state = .awaitingEcho(boundary: boundary, scroll: scroll, verdict: verdict, seen: 0, lineEnd: nil)
                    typeahead = []
                    typeaheadClean = true
                } else {
                    noteTyped(b)
                    forward.append(b)
                }
            case .awaitingEcho:
                // Typed (or pasted) before the shell echoed the Enter.
                if isEnter {
                    if !typeahead.isEmpty && typeaheadClean {
                        let line = String(decoding: typeahead, as: UTF8.self)
                        let verdict = policy.judge(line)
                        if verdict.denied {
                            // Too early to clear a line the shell has not read: drop it and the rest.
                            forward += [0x15]
                            record(line, verdict: verdict, output: "")
                            typeahead = []
                            return InputDecision(forward: forward, blockedNotice: "command blocked by rule \(verdict.rule ?? "?"): \(Self.printable(line))")
                        }
                        queued.append((line, verdict))
                    }
                    typeahead = []
                    typeaheadClean = true
                } else if b >= 0x20 && b != 0x7F {
                    typeahead.append(b)
                } else {
                    typeaheadClean = false // editing keys: the literal bytes are not the line
                }
                forward.append(b)
            }
        }
        return InputDecision(forward: forward, blockedNotice: nil)
    }

    // MARK: Output

    public func output(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        unechoed = []
        guard case .awaitingEcho = state else {
            screen.feed(bytes)
            if case .running = state { capture(bytes) }
            return
        }
        // Waiting for the shell to accept the line: it writes CR LF at the end of it. Feed up
        // to each CR, note the cursor there, and take the line when a LF follows.
        var i = 0
        while i < bytes.count {
            guard case let .awaitingEcho(boundary, scroll, verdict, seen, lineEnd) = state else {
                let rest = UnsafeRawBufferPointer(rebasing: bytes[i...])
                screen.feed(rest)
                if case .running = state { capture(rest) }
                return
            }
            let b = bytes[i]
            if b == 0x0A, let end = lineEnd {
                // Readline accepts a line with the cursor wherever it was (an Enter in the
                // middle of the line runs all of it): read to the end of the logical line.
                begin(boundary: boundary, scroll: scroll, verdict: verdict,
                      end: TerminalScreen.Position(row: end.row, column: screen.columns))
                continue // the LF is fed (and captured) by the branch above
            }
            if b == 0x0D {
                // "\r\r\n" too: the first CR of a run marks where the line ended.
                state = .awaitingEcho(boundary: boundary, scroll: scroll, verdict: verdict, seen: seen + 1, lineEnd: lineEnd ?? screen.cursor)
            } else if lineEnd != nil {
                state = .awaitingEcho(boundary: boundary, scroll: scroll, verdict: verdict, seen: seen + 1, lineEnd: nil)
            } else if seen + 1 > options.echoLimit {
                screen.feed(UnsafeRawBufferPointer(rebasing: bytes[i...(i)]))
                begin(boundary: boundary, scroll: scroll, verdict: verdict, end: screen.cursor)
                i += 1
                continue
            } else {
                state = .awaitingEcho(boundary: boundary, scroll: scroll, verdict: verdict, seen: seen + 1, lineEnd: nil)
            }
            screen.feed(UnsafeRawBufferPointer(rebasing: bytes[i...(i)]))
            i += 1
        }
    }

    public func resize(columns: Int, rows: Int) {
        screen.resize(columns: columns, rows: rows)
        // The shell redraws its line; a saved boundary no longer points where it did.
        if case .typing = state { state = .idle }
    }

    /// An exec request: the command is known; what follows is its output.
    public func exec(_ command: String, verdict: CommandPolicy.Verdict) {
        current = Extracted(time: Date(), offset: hooks.started(command, verdict), command: command, output: "", verdict: verdict)
        captured = []
        state = .running
    }

    /// The session ended: the last command is complete.
    public func finish() {
        finishCurrent()
        state = .idle
    }

    // MARK: Internals

    private func begin(boundary: TerminalScreen.Position, scroll: Int, verdict: CommandPolicy.Verdict, end: TerminalScreen.Position) {
        let line = lineText(from: boundary, scroll: scroll, to: end)
        let pasted = queued
        queued = []
        if line.isEmpty {
            state = .idle // nothing echoed: a password, or an empty line
        } else {
            // A rule may match only now that the whole line is known (completion, recall). It
            // has run by now: a late deny match is recorded as high risk.
            var v = verdict
            if v.risk == .normal, case let judged = policy.judge(line), judged.risk != .normal {
                v = CommandPolicy.Verdict(risk: .high, rule: judged.rule)
            }
            current = Extracted(time: Date(), offset: hooks.started(line, v), command: line, output: "", verdict: v)
            captured = []
            state = .running
        }
        for (text, v) in pasted {
            let offset = hooks.started(text, v)
            hooks.finished(Extracted(time: Date(), offset: offset, command: text, output: "", verdict: v))
        }
    }

    private func noteTyped(_ b: UInt8) {
        if b >= 0x20 && b != 0x7F && unechoed.count < 4096 { unechoed.append(b) } else if b < 0x20 || b == 0x7F { unechoed = [] }
    }

    private func capture(_ bytes: UnsafeRawBufferPointer) {
        guard current != nil, captured.count < options.outputBytes else { return }
        captured += bytes.prefix(options.outputBytes - captured.count)
    }

    private func finishCurrent() {
        guard var done = current else { return }
        current = nil
        done.output = Self.firstLines(of: captured, lines: options.outputLines)
        captured = []
        hooks.finished(done)
    }

    private func record(_ line: String, verdict: CommandPolicy.Verdict, output: String) {
        finishCurrent()
        let offset = hooks.started(line, verdict)
        hooks.finished(Extracted(time: Date(), offset: offset, command: line, output: output, verdict: verdict))
    }

    private func lineText(from boundary: TerminalScreen.Position, scroll: Int, toEndOfLine: Bool) -> String {
        let cursor = screen.cursor
        return lineText(from: boundary, scroll: scroll, to: toEndOfLine ? TerminalScreen.Position(row: cursor.row, column: screen.columns) : cursor)
    }

    private func lineText(from boundary: TerminalScreen.Position, scroll: Int, to end: TerminalScreen.Position) -> String {
        let shifted = boundary.row - (screen.scrollCount - scroll)
        let start = shifted >= 0 ? TerminalScreen.Position(row: shifted, column: boundary.column) : TerminalScreen.Position(row: 0, column: 0)
        guard (end.row, end.column) > (start.row, start.column) else { return "" }
        let text = screen.text(from: start, to: end)
        return text.trimmingCharacters(in: .whitespaces)
    }

    /// Output for the command list: escape sequences and carriage returns removed, first lines.
    static func firstLines(of bytes: [UInt8], lines: Int) -> String {
        var plain: [UInt8] = []
        plain.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x1B {
                i += 1
                if i < bytes.count, bytes[i] == UInt8(ascii: "[") {
                    i += 1
                    while i < bytes.count, !(0x40...0x7E).contains(bytes[i]) { i += 1 }
                } else if i < bytes.count, bytes[i] == UInt8(ascii: "]") {
                    while i < bytes.count, bytes[i] != 0x07, bytes[i] != 0x1B { i += 1 }
                }
                i += 1
                continue
            }
            if b == 0x0D || (b < 0x20 && b != 0x0A && b != 0x09) { i += 1; continue }
            plain.append(b)
            i += 1
        }
        var text = String(decoding: plain, as: UTF8.self)
        if text.hasPrefix("\n") { text.removeFirst() }
        return text.split(separator: "\n", omittingEmptySubsequences: false).prefix(lines).joined(separator: "\n")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    public static func printable(_ text: String) -> String {
        String(text.unicodeScalars.map { $0.properties.generalCategory == .control ? "?" : Character($0) })
    }
}
