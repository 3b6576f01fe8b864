import Crypto
import Foundation

/// Audits legacy scp (`scp -O`, the rcp protocol): the asset runs `scp -t TARGET` (upload,
/// the user sends) or `scp -f PATH` (download, the asset sends). Reports every file as a
/// transfer (relative path with its directories, bytes, SHA-256, result) and enforces the
/// upload policy by answering the first file or directory record itself.
///
/// The protocol is lock-step: the sender sends a record (`C`, `D`, `E`, `T`, or file data and
/// its status byte) and waits for the receiver's answer (`\0` ok, `\1msg\n` warning,
/// `\2msg\n` fatal). Pure and synchronous: call it for every chunk, in order, from one queue;
/// chunks may split anything anywhere. Anything it cannot trust throws `Failure.malformed`:
/// close the channel.
public final class ScpAuditor {
    public struct Policy: Sendable {
        public var allowUpload: Bool
        public var allowDownload: Bool
        /// Largest file size a `C` record may announce.
        public var maxFileSize: Int

        public init(allowUpload: Bool = true, allowDownload: Bool = true, maxFileSize: Int = 1 << 40) {
            self.allowUpload = allowUpload
            self.allowDownload = allowDownload
            self.maxFileSize = maxFileSize
        }
    }

    public typealias Verdict = TransferVerdict
    public typealias Events = TransferAuditEvents

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case malformed(String)
        public var description: String {
            switch self { case .malformed(let message): return message }
        }
    }

    /// The scp invocation the asset is asked to run.
    public struct Command: Sendable, Equatable {
        public var direction: TransferDirection
        public var recursive: Bool
        public var preserveTimes: Bool
        public var targetIsDirectory: Bool
        /// The path argument(s) as given, joined by spaces.
        public var target: String
    }

    public static let uploadRefusal = "gatehouse: uploads are not allowed for you on this asset"
    public static let downloadRefusal = "gatehouse: downloads are not allowed for you on this asset"

    static let maxLine = 4096
    static let maxPathBytes = 4096
    static let maxDepth = 1000
    /// Sender bytes that arrived while it should have been waiting for the receiver.
    static let maxBacklog = 64 * 1024

    public let command: Command
    let policy: Policy
    private let now: () -> Date
    private let events: Events

    private final class FileInProgress {
        let path: String
        let size: Int
        let started: Date
        var bytes = 0
        var hash = SHA256()
        var senderError: String?

        init(path: String, size: Int, started: Date) {
            self.path = path
            self.size = size
            self.started = started
        }
    }

    /// What the sender waits for the receiver to answer.
    private enum Expect {
        case start, time, file(FileInProgress), directory(String), end, fileDone(FileInProgress)
    }

    private enum SenderState {
        case record
        case data(FileInProgress)
        case dataStatus(FileInProgress)
        case awaiting(Expect)
        /// The sender gave up (or was told to): the rest of its stream is not parsed.
        case ended
        /// The upload was refused: nothing more of the user's goes to the asset.
        case refused
    }

    private var sState: SenderState = .awaiting(.start)
    private var sLine: [UInt8] = []
    private var backlog: [UInt8] = []
    private var rLine: [UInt8] = []
    private var rCode: UInt8?
    private var directories: [String] = []
    private var replyToClient: [UInt8] = []
    private var refusedForward: [UInt8] = []
    private var downloadRefusalSent = false
    private var failure: Failure?
    private var finished = false

    /// The user's side is the sender (upload) or the receiver (download).
    private var clientSends: Bool { command.direction == .upload }
    private var refusing: Bool { command.direction == .upload ? !policy.allowUpload : !policy.allowDownload }

    /// Nil when `command` is not a plain `scp -t` / `scp -f` invocation.
    public init?(command: String, policy: Policy = Policy(), now: @escaping () -> Date = { Date() }, events: Events) {
        guard let parsed = Self.parse(command: command) else { return nil }
        self.command = parsed
        self.policy = policy
        self.now = now
        self.events = events
    }

    /// Upload for `scp -t`, download for `scp -f`, nil for anything else (including a command
    /// line that would make the shell run more than scp). Lets the caller refuse before connecting.
    public static func direction(of command: String) -> TransferDirection? {
        parse(command: command)?.direction
    }

    /// Bytes the auditor holds (partial lines, early sender bytes, undelivered replies).
    var bufferedBytes: Int { sLine.count + rLine.count + backlog.count + replyToClient.count + refusedForward.count }

    // MARK: Streams

    /// The user's bytes: `forward` goes on to the asset, `replyToClient` to the user.
    public func clientBytes(_ input: [UInt8]) throws -> Verdict {
        if let failure { throw failure }
        do {
            var verdict = Verdict()
            if command.direction == .download && !policy.allowDownload {
                // Only a safety net: the caller should have refused the exec up front.
                if !downloadRefusalSent && !input.isEmpty {
                    downloadRefusalSent = true
                    let time = now()
                    events.transfer(AuditedTransfer(direction: .download, path: Self.cap(command.target), bytes: 0,
                                                    started: time, ended: time, result: "refused", sha256: nil))
                    verdict.replyToClient = [2] + Array(Self.downloadRefusal.utf8) + [10]
                }
                return verdict
            }
            if clientSends {
                try senderBytes(input)
                if refusing {
                    verdict.forward = refusedForward
                    refusedForward.removeAll()
                } else {
                    verdict.forward = input
                }
            } else {
                var unchanged = TransferByteEmitter(input)
                try receiverBytes(input, &unchanged)
                verdict.forward = input
            }
            verdict.replyToClient = replyToClient
            replyToClient.removeAll()
            return verdict
        } catch let error as Failure {
            failure = error
            throw error
        }
    }

    /// The asset's bytes; returns what to send the user (the same bytes, or a refusal).
    public func serverBytes(_ input: [UInt8]) throws -> [UInt8] {
        if let failure { throw failure }
        do {
            if command.direction == .download && !policy.allowDownload { return [] }
            if clientSends {
                var out = TransferByteEmitter(input)
                try receiverBytes(input, &out)
                return out.result
            }
            try senderBytes(input)
            return input
        } catch let error as Failure {
            failure = error
            throw error
        }
    }

    /// The channel closed: a file still crossing becomes a transfer with result `incomplete`.
    public func finish() {
        guard !finished else { return }
        finished = true
        var file: FileInProgress?
        switch sState {
        case .data(let f), .dataStatus(let f), .awaiting(.file(let f)), .awaiting(.fileDone(let f)): file = f
        default: break
        }
        if let file {
            events.transfer(AuditedTransfer(direction: command.direction, path: file.path, bytes: file.bytes, started: file.started,
                                            ended: now(), result: "incomplete",
                                            sha256: file.bytes == file.size ? TransferHex.string(file.hash.finalize()) : nil))
        }
        sState = .ended
        sLine = []
        rLine = []
        backlog = []
    }

    // MARK: Sender

    private func senderBytes(_ input: [UInt8]) throws {
        guard !input.isEmpty else { return }
        if !backlog.isEmpty {
            backlog += input
        } else {
            let used = try sender(input, 0)
            if used < input.count { backlog = Array(input[used...]) }
        }
        if backlog.count > Self.maxBacklog { throw Failure.malformed("the scp sender does not wait for the receiver's answers") }
    }

    /// Parses sender bytes from `start` until they run out or the sender must wait for an answer; returns where it stopped.
    private func sender(_ b: [UInt8], _ start: Int) throws -> Int {
        var i = start
        let n = b.count
        while i < n {
            switch sState {
            case .awaiting:
                return i
            case .ended, .refused:
                return n
            case .data(let file):
                let k = min(file.size - file.bytes, n - i)
                b.withUnsafeBytes { file.hash.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[i..<(i + k)])) }
                file.bytes += k
                i += k
                if file.bytes == file.size { sState = .dataStatus(file) }
            case .dataStatus(let file):
                if sLine.isEmpty {
                    let status = b[i]
                    i += 1
                    if status == 0 {
                        sState = .awaiting(.fileDone(file))
                        continue
                    }
                    sLine.append(status)
                }
                guard let line = try senderLine(b, &i) else { return n }
                file.senderError = Self.message(line)
                sState = .awaiting(.fileDone(file))
            case .record:
                if sLine.isEmpty && !Self.recordTypes.contains(b[i]) {
                    throw Failure.malformed("scp: expected a control record, got byte \(b[i])")
                }
                guard let line = try senderLine(b, &i) else { return n }
                try record(line)
            }
        }
        return i
    }

    private static let recordTypes: Set<UInt8> = [1, 2, UInt8(ascii: "C"), UInt8(ascii: "D"), UInt8(ascii: "E"), UInt8(ascii: "T")]

    /// Completes the sender's current line (without its newline), or takes all of `b` and returns nil.
    private func senderLine(_ b: [UInt8], _ i: inout Int) throws -> [UInt8]? {
        let n = b.count
        let end = b[i..<n].firstIndex(of: 10)
        let stop = end ?? n
        if sLine.count + (stop - i) > Self.maxLine { throw Failure.malformed("scp: a record line longer than \(Self.maxLine) bytes") }
        sLine.append(contentsOf: b[i..<stop])
        guard let end else {
            i = n
            return nil
        }
        i = end + 1
        let line = sLine
        sLine.removeAll(keepingCapacity: true)
        return line
    }

    private func record(_ line: [UInt8]) throws {
        let type = line[0]
        if refusing && clientSends && type != UInt8(ascii: "C") && type != UInt8(ascii: "D") {
            refusedForward += line + [10]
        }
        switch type {
        case 1, 2:
            // The sender's own error (e.g. a source file it cannot read); no answer follows.
            events.activity("error", Self.message(line))
            if type == 2 { sState = .ended }
        case UInt8(ascii: "E"):
            if line.count != 1 { throw Failure.malformed("scp: malformed E record") }
            _ = directories.popLast()
            sState = .awaiting(.end)
        case UInt8(ascii: "T"):
            try Self.checkTimes(line)
            sState = .awaiting(.time)
        default: // C or D
            let (size, name) = try header(line)
            let path = Self.cap((directories + [name]).joined(separator: "/"))
            if refusing {
                sState = .refused
                replyToClient += [2] + Array(Self.uploadRefusal.utf8) + [10]
                let time = now()
                events.transfer(AuditedTransfer(direction: .upload, path: type == UInt8(ascii: "D") ? path + "/" : path, bytes: 0,
                                                started: time, ended: time, result: "refused", sha256: nil))
                return
            }
            if type == UInt8(ascii: "C") {
                sState = .awaiting(.file(FileInProgress(path: path, size: size, started: now())))
            } else {
                if directories.count >= Self.maxDepth { throw Failure.malformed("scp: directories nested deeper than \(Self.maxDepth)") }
                directories.append(name)
                sState = .awaiting(.directory(path))
            }
        }
    }

    /// `C0644 1234 name` / `D0755 0 name`: size and name, checked as OpenSSH's sink checks them.
    private func header(_ line: [UInt8]) throws -> (Int, String) {
        let kind = line[0] == UInt8(ascii: "C") ? "C" : "D"
        var i = 1
        let modeStart = i
        while i < line.count, line[i] >= UInt8(ascii: "0"), line[i] <= UInt8(ascii: "7") { i += 1 }
        guard i - modeStart >= 1, i - modeStart <= 6, i < line.count, line[i] == UInt8(ascii: " ") else {
            throw Failure.malformed("scp: bad mode in \(kind) record")
        }
        i += 1
        let sizeStart = i
        var size = 0
        while i < line.count, line[i] >= UInt8(ascii: "0"), line[i] <= UInt8(ascii: "9") {
            if i - sizeStart >= 14 { throw Failure.malformed("scp: file size too large in \(kind) record") }
            size = size * 10 + Int(line[i] - UInt8(ascii: "0"))
            i += 1
        }
        guard i > sizeStart, i < line.count, line[i] == UInt8(ascii: " ") else { throw Failure.malformed("scp: bad size in \(kind) record") }
        if size > policy.maxFileSize { throw Failure.malformed("scp: file size \(size) exceeds the limit of \(policy.maxFileSize)") }
        let nameBytes = line[(i + 1)...]
        let name = String(decoding: nameBytes, as: UTF8.self)
        if nameBytes.isEmpty || nameBytes.contains(UInt8(ascii: "/")) || nameBytes.contains(0) || name == ".." || name == "." {
            throw Failure.malformed("scp: unexpected file name in \(kind) record")
        }
        return (size, Self.cap(name))
    }

    /// `T<mtime> <usec> <atime> <usec>`
    private static func checkTimes(_ line: [UInt8]) throws {
        let fields = line[1...].split(separator: UInt8(ascii: " "), omittingEmptySubsequences: false)
        guard fields.count == 4, fields.allSatisfy({ !$0.isEmpty && $0.count <= 20 && $0.allSatisfy { $0 >= 48 && $0 <= 57 } }) else {
            throw Failure.malformed("scp: malformed T record")
        }
    }

    // MARK: Receiver

    /// Answers from the receiver; `out` is the stream the user gets when the asset is the
    /// receiver (a refusal is inserted after the answer that let the refused record through).
    private func receiverBytes(_ b: [UInt8], _ out: inout TransferByteEmitter) throws {
        var i = 0
        var emitted = 0
        let n = b.count
        while i < n {
            if rCode == nil {
                let code = b[i]
                i += 1
                if code == 0 {
                    try answer(ok: true, fatal: false, message: "")
                } else {
                    rCode = code
                }
            } else {
                let end = b[i..<n].firstIndex(of: 10) ?? n
                let keep = min(end - i, Self.maxLine - rLine.count)
                if keep > 0 { rLine.append(contentsOf: b[i..<(i + keep)]) }
                i = end
                if end < n {
                    i += 1
                    let code = rCode!
                    // As scp does: 1 is a warning, anything else fatal (an unknown byte is part of the message).
                    var text = rLine
                    if code != 1 && code != 2 { text.insert(code, at: 0) }
                    rCode = nil
                    rLine.removeAll(keepingCapacity: true)
                    try answer(ok: false, fatal: code != 1, message: Self.message([0] + text))
                }
            }
            if clientSends && !replyToClient.isEmpty {
                out.emit(emitted..<i)
                emitted = i
                out.append(replyToClient)
                replyToClient.removeAll()
            }
        }
        out.emit(emitted..<n)
    }

    private func answer(ok: Bool, fatal: Bool, message: String) throws {
        guard case .awaiting(let expect) = sState else {
            if !ok { events.activity("error", message) }
            return
        }
        let result = ok ? "ok" : message
        let next: SenderState = fatal ? .ended : .record
        switch expect {
        case .start, .time, .end:
            if !ok { events.activity("error", message) }
            sState = next
        case .directory(let path):
            if !ok {
                _ = directories.popLast()
                events.activity("error", "\(path)/: \(message)")
            } else if command.direction == .upload {
                events.activity("mkdir", "\(path): ok")
            }
            sState = next
        case .file(let file):
            if ok {
                sState = file.size == 0 ? .dataStatus(file) : .data(file)
            } else {
                events.transfer(AuditedTransfer(direction: command.direction, path: file.path, bytes: 0, started: file.started,
                                                ended: now(), result: result, sha256: nil))
                sState = next
            }
        case .fileDone(let file):
            events.transfer(AuditedTransfer(direction: command.direction, path: file.path, bytes: file.bytes, started: file.started,
                                            ended: now(), result: file.senderError ?? result,
                                            sha256: TransferHex.string(file.hash.finalize())))
            sState = next
        }
        if case .awaiting = sState { return }
        if !backlog.isEmpty {
            let pending = backlog
            backlog = []
            let used = try sender(pending, 0)
            if used < pending.count { backlog = Array(pending[used...]) }
        }
    }

    // MARK: Text

    /// A message line (its first byte is the code): at most 4 KiB, control characters blanked.
    private static func message(_ line: [UInt8]) -> String {
        let text = String(decoding: line.dropFirst().prefix(maxLine), as: UTF8.self)
        return String(String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
    }

    private static func cap(_ path: String) -> String {
        let utf8 = path.utf8
        guard utf8.count > maxPathBytes else { return path }
        return String(decoding: utf8.prefix(maxPathBytes), as: UTF8.self)
    }

    // MARK: Command line

    /// Parses `scp [-r] [-p] [-d] [-v] (-t|-f) [--] PATH...`. Nil for anything else, including
    /// shell syntax (`;`, `|`, `&`, `$`, backquotes, redirections, newlines) outside quotes.
    public static func parse(command: String) -> Command? {
        guard let words = shellWords(command), let program = words.first else { return nil }
        guard program == "scp" || program.hasSuffix("/scp") else { return nil }
        var direction: TransferDirection?
        var recursive = false, preserve = false, directory = false
        var index = 1
        while index < words.count {
            let word = words[index]
            if word == "--" {
                index += 1
                break
            }
            guard word.hasPrefix("-"), word.count > 1 else { break }
            for flag in word.dropFirst() {
                switch flag {
                case "t", "f":
                    let d: TransferDirection = flag == "t" ? .upload : .download
                    if let direction, direction != d { return nil }
                    direction = d
                case "r": recursive = true
                case "p": preserve = true
                case "d": directory = true
                case "v", "q", "T": break
                default: return nil
                }
            }
            index += 1
        }
        guard let direction, index < words.count else { return nil }
        return Command(direction: direction, recursive: recursive, preserveTimes: preserve, targetIsDirectory: directory,
                       target: words[index...].joined(separator: " "))
    }

    /// Splits like a POSIX shell (quotes, backslashes); nil when the line holds shell syntax beyond words.
    static func shellWords(_ line: String) -> [String]? {
        var words: [String] = []
        var word = "", inWord = false
        var quote: Character?
        var escaped = false
        for c in line {
            if escaped {
                word.append(c)
                escaped = false
                continue
            }
            if let q = quote {
                if c == q {
                    quote = nil
                } else if c == "\\" && q == "\"" {
                    escaped = true
                } else {
                    if q == "\"" && (c == "$" || c == "`") { return nil }
                    word.append(c)
                }
                continue
            }
            switch c {
            case "\\":
                escaped = true
                inWord = true
            case "'", "\"":
                quote = c
                inWord = true
            case " ", "\t":
                if inWord { words.append(word) }
                word = ""
                inWord = false
            case ";", "&", "|", "$", "`", "<", ">", "(", ")", "\n", "\r":
                // Control operators, substitutions, redirections: the shell would run more than scp.
                return nil
            case "#" where !inWord:
                // A comment: whatever follows is not part of the command; refuse to guess.
                return nil
            default:
                word.append(c)
                inWord = true
            }
        }
        if quote != nil || escaped { return nil }
        if inWord { words.append(word) }
        return words
    }
}
