import Crypto
import Foundation

// MARK: - Shared vocabulary of the transfer auditors (SFTP and legacy scp)

/// Which way a file went, seen from the user.
public enum TransferDirection: String, Sendable, Equatable {
    /// The user sent the file to the asset.
    case upload
    /// The asset sent the file to the user.
    case download
}

/// One file that crossed (or tried to cross) a channel, as an auditor saw it.
public struct AuditedTransfer: Sendable, Equatable {
    public var direction: TransferDirection
    /// The remote path (SFTP: as the client named it; scp: relative to the scp target, with its directories).
    public var path: String
    /// Content bytes that crossed the gateway.
    public var bytes: Int
    public var started: Date
    public var ended: Date
    /// `ok`, `refused`, `incomplete` (the channel closed first) or the error, e.g. `permission denied: Permission denied`.
    public var result: String
    /// Lowercase hex SHA-256 of the content, when it crossed strictly in order from offset 0 without gaps; nil otherwise.
    public var sha256: String?

    public init(direction: TransferDirection, path: String, bytes: Int, started: Date, ended: Date, result: String, sha256: String?) {
        self.direction = direction
        self.path = path
        self.bytes = bytes
        self.started = started
        self.ended = ended
        self.result = result
        self.sha256 = sha256
    }

    /// The row the store keeps.
    public func record(sessionID: String) -> TransferRecord {
        TransferRecord(sessionID: sessionID, time: started, direction: direction.rawValue, path: path, bytes: bytes, outcome: result)
    }
}

/// Where an auditor reports. Called synchronously, on the caller's queue, from within
/// `clientBytes` / `serverBytes` / `finish`.
public struct TransferAuditEvents {
    public var transfer: (AuditedTransfer) -> Void
    /// A file-system change other than a transfer: kind is one of `remove`, `rename`, `mkdir`,
    /// `rmdir`, `setstat`, `symlink`, `hardlink`, `copy`; detail names the path(s) and ends with
    /// `: ` and the result (`ok`, `incomplete` or the error).
    public var activity: (_ kind: String, _ detail: String) -> Void

    public init(transfer: @escaping (AuditedTransfer) -> Void = { _ in },
                activity: @escaping (_ kind: String, _ detail: String) -> Void = { _, _ in }) {
        self.transfer = transfer
        self.activity = activity
    }
}

/// What to do with a chunk of the user's bytes.
public struct TransferVerdict: Equatable, Sendable {
    /// Bytes to pass on to the asset (usually the chunk itself, unchanged and uncopied).
    public var forward: [UInt8]
    /// Bytes the gateway itself sends the user (after whatever it already sent them).
    public var replyToClient: [UInt8]

    public init(forward: [UInt8] = [], replyToClient: [UInt8] = []) {
        self.forward = forward
        self.replyToClient = replyToClient
    }
}

enum TransferHex {
    static func string<D: Sequence>(_ bytes: D) -> String where D.Element == UInt8 {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}

/// The output of one call: the input itself while everything passes unchanged (no copy),
/// materialised only when something is held back, dropped or inserted.
struct TransferByteEmitter {
    let input: [UInt8]
    private var identity = true
    private var covered = 0
    private var out: [UInt8] = []

    init(_ input: [UInt8]) { self.input = input }

    mutating func emit(_ range: Range<Int>) {
        guard !range.isEmpty else { return }
        if identity {
            if range.lowerBound == covered {
                covered = range.upperBound
                return
            }
            materialise()
        }
        out.append(contentsOf: input[range])
    }

    mutating func append<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        guard !bytes.isEmpty else { return }
        if identity { materialise() }
        out.append(contentsOf: bytes)
    }

    private mutating func materialise() {
        out.reserveCapacity(input.count + 128)
        out.append(contentsOf: input[0..<covered])
        identity = false
    }

    var result: [UInt8] {
        if identity { return covered == input.count ? input : Array(input[0..<covered]) }
        return out
    }
}

// MARK: - SFTP

/// Audits an SFTP version 3 stream (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it) that
/// the gateway relays: reports every file read or written as a transfer (with its SHA-256 when
/// it went in order), file-system changes as activities, and enforces the upload/download
/// policy by answering refused OPENs itself.
///
/// Pure and synchronous: call it for every chunk, in order, from one queue. Chunks may split
/// packets anywhere. The user's bytes are held back only while a packet the auditor must judge
/// is incomplete; WRITE data streams through as it arrives (never more than one packet is
/// buffered per direction). Anything it cannot trust throws `Failure.malformed`: close the channel.
public final class SFTPAuditor {
    public struct Policy: Sendable {
        public var allowUpload: Bool
        public var allowDownload: Bool
        /// Largest frame (the uint32 length) accepted in either direction.
        public var maxPacket: Int
        public var maxOutstandingRequests: Int
        public var maxOpenFiles: Int

        public init(allowUpload: Bool = true, allowDownload: Bool = true, maxPacket: Int = 256 * 1024 + 1024,
                    maxOutstandingRequests: Int = 10_000, maxOpenFiles: Int = 1_000) {
            self.allowUpload = allowUpload
            self.allowDownload = allowDownload
            self.maxPacket = maxPacket
            self.maxOutstandingRequests = maxOutstandingRequests
            self.maxOpenFiles = maxOpenFiles
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

    public static let uploadRefusal = "gatehouse: uploads are not allowed for you on this asset"
    public static let downloadRefusal = "gatehouse: downloads are not allowed for you on this asset"

    /// Paths and messages are kept to this many bytes.
    static let maxPathBytes = 4096
    static let maxMessageBytes = 256
    static let maxHandleBytes = 256
    /// Refusals waiting for the asset's stream to reach a packet boundary.
    static let maxPendingReplies = 64 * 1024

    let policy: Policy
    private let now: () -> Date
    private let events: Events

    // Packet types (draft-02).
    enum T {
        static let INIT: UInt8 = 1, VERSION: UInt8 = 2, OPEN: UInt8 = 3, CLOSE: UInt8 = 4, READ: UInt8 = 5, WRITE: UInt8 = 6
        static let LSTAT: UInt8 = 7, FSTAT: UInt8 = 8, SETSTAT: UInt8 = 9, FSETSTAT: UInt8 = 10, OPENDIR: UInt8 = 11
        static let READDIR: UInt8 = 12, REMOVE: UInt8 = 13, MKDIR: UInt8 = 14, RMDIR: UInt8 = 15, REALPATH: UInt8 = 16
        static let STAT: UInt8 = 17, RENAME: UInt8 = 18, READLINK: UInt8 = 19, SYMLINK: UInt8 = 20
        static let STATUS: UInt8 = 101, HANDLE: UInt8 = 102, DATA: UInt8 = 103, NAME: UInt8 = 104, ATTRS: UInt8 = 105
        static let EXTENDED: UInt8 = 200, EXTENDED_REPLY: UInt8 = 201
    }

    enum Flag {
        static let READ: UInt32 = 0x01, WRITE: UInt32 = 0x02, APPEND: UInt32 = 0x04, CREAT: UInt32 = 0x08
        static let TRUNC: UInt32 = 0x10, EXCL: UInt32 = 0x20
    }

    enum Status {
        static let OK: UInt32 = 0, EOF: UInt32 = 1, PERMISSION_DENIED: UInt32 = 3
        static func name(_ code: UInt32) -> String {
            switch code {
            case 0: return "ok"
            case 1: return "end of file"
            case 2: return "no such file"
            case 3: return "permission denied"
            case 4: return "failure"
            case 5: return "bad message"
            case 6: return "no connection"
            case 7: return "connection lost"
            case 8: return "operation unsupported"
            default: return "status \(code)"
            }
        }
    }

    private final class OpenFile {
        let path: String
        let pflags: UInt32
        let started: Date
        let serial: Int
        var writes = 0, written = 0
        var writeNext: UInt64 = 0
        var writeHash: SHA256? = SHA256()
        var reads = 0, read = 0
        var readNext: UInt64 = 0
        var readHash: SHA256? = SHA256()
        var error: String?

        init(path: String, pflags: UInt32, started: Date, serial: Int) {
            self.path = path
            self.pflags = pflags
            self.started = started
            self.serial = serial
        }

        var isUpload: Bool { writes > 0 || pflags & (Flag.CREAT | Flag.TRUNC) != 0 }
        var isDownload: Bool { reads > 0 }
    }

    /// A handle as a dictionary key without an allocation for the usual short handles.
    struct HandleKey: Hashable {
        var small: UInt64 = 0
        var count: Int
        var big: [UInt8]?

        init(_ bytes: [UInt8], _ range: Range<Int>) {
            count = range.count
            if count <= 8 {
                for i in range { small = small << 8 | UInt64(bytes[i]) }
            } else {
                big = Array(bytes[range])
            }
        }

        var hex: String {
            if let big { return TransferHex.string(big) }
            return TransferHex.string((0..<count).map { UInt8(truncatingIfNeeded: small >> (8 * UInt64(count - 1 - $0))) })
        }
    }

    private enum Pending {
        case open(path: String, pflags: UInt32, started: Date, serial: Int)
        case read(OpenFile, offset: UInt64)
        case write(OpenFile)
        case close(HandleKey, OpenFile)
        case activity(kind: String, detail: String, serial: Int)
    }

    /// A packet's remaining bytes that pass without being buffered: `hashLeft` content bytes
    /// (WRITE or DATA data, counted and hashed into `file`), then `plainLeft` other bytes.
    private struct Stream {
        var hashLeft = 0
        var plainLeft = 0
        var forward = true
        var file: OpenFile?
        var active: Bool { hashLeft > 0 || plainLeft > 0 }
    }

    private enum Step {
        case needMore(Int)
        /// The packet's first `length` bytes were judged; the rest (if any) is in the stream.
        case done(length: Int, forward: Bool)
    }

    private var pending: [UInt32: Pending] = [:]
    private var handles: [HandleKey: OpenFile] = [:]
    private var serial = 0

    private var cBuf: [UInt8] = []
    private var cNeed = 0
    private var cStream = Stream()
    private var sBuf: [UInt8] = []
    private var sNeed = 0
    private var sStream = Stream()
    private var replies: [UInt8] = []
    private var pendingReplies: [UInt8] = []

    private var sawInit = false
    private var sawVersion = false
    private var failure: Failure?
    private var finished = false

    /// The version the asset answered (3), once it has.
    public private(set) var version: UInt32?

    public init(policy: Policy = Policy(), now: @escaping () -> Date = { Date() }, events: Events) {
        self.policy = policy
        self.now = now
        self.events = events
    }

    /// Bytes the auditor holds: partial packets of both directions and refusals not yet deliverable.
    var bufferedBytes: Int { cBuf.count + sBuf.count + pendingReplies.count }
    var outstandingRequests: Int { pending.count }
    var openFiles: Int { handles.count }

    // MARK: User -> asset

    /// The user's bytes. `forward` goes on to the asset; `replyToClient` goes to the user (a
    /// refusal). A refusal is only returned here when the asset's stream is at a packet
    /// boundary; otherwise `serverBytes` inserts it at the next one.
    public func clientBytes(_ input: [UInt8]) throws -> Verdict {
        if let failure { throw failure }
        do {
            var out = TransferByteEmitter(input)
            let n = input.count
            var i = 0
            while i < n {
                if cStream.active {
                    let forward = cStream.forward
                    let end = pump(&cStream, input, i, upload: true)
                    if forward { out.emit(i..<end) }
                    i = end
                    continue
                }
                if cBuf.isEmpty {
                    switch try clientStep(input, i, n - i) {
                    case .needMore(let k):
                        cBuf.append(contentsOf: input[i..<n])
                        cNeed = k
                        i = n
                    case .done(let length, let forward):
                        if forward { out.emit(i..<(i + length)) }
                        i += length
                    }
                } else {
                    let k = min(cNeed - cBuf.count, n - i)
                    cBuf.append(contentsOf: input[i..<(i + k)])
                    i += k
                    if cBuf.count < cNeed { break }
                    switch try clientStep(cBuf, 0, cBuf.count) {
                    case .needMore(let k):
                        cNeed = k
                    case .done(let length, let forward):
                        if forward { out.append(cBuf[0..<length]) }
                        Self.release(&cBuf)
                    }
                }
            }
            var verdict = Verdict(forward: out.result)
            if !replies.isEmpty {
                if serverAtBoundary && pendingReplies.isEmpty {
                    verdict.replyToClient = replies
                } else {
                    pendingReplies += replies
                    if pendingReplies.count > Self.maxPendingReplies {
                        throw Failure.malformed("too many refused requests while the asset is mid-packet")
                    }
                }
                replies.removeAll()
            }
            return verdict
        } catch let error as Failure {
            failure = error
            throw error
        }
    }

    // MARK: Asset -> user

    /// The asset's bytes; returns what to send the user: the same bytes, plus any refusal
    /// that was waiting for a packet boundary.
    public func serverBytes(_ input: [UInt8]) throws -> [UInt8] {
        if let failure { throw failure }
        do {
            var out = TransferByteEmitter(input)
            var emitted = 0
            let n = input.count
            var i = 0
            func boundary() {
                if !pendingReplies.isEmpty && serverAtBoundary {
                    out.emit(emitted..<i)
                    emitted = i
                    out.append(pendingReplies)
                    pendingReplies.removeAll()
                }
            }
            boundary()
            while i < n {
                if sStream.active {
                    i = pump(&sStream, input, i, upload: false)
                    boundary()
                    continue
                }
                if sBuf.isEmpty {
                    switch try serverStep(input, i, n - i) {
                    case .needMore(let k):
                        sBuf.append(contentsOf: input[i..<n])
                        sNeed = k
                        i = n
                    case .done(let length, _):
                        i += length
                    }
                } else {
                    let k = min(sNeed - sBuf.count, n - i)
                    sBuf.append(contentsOf: input[i..<(i + k)])
                    i += k
                    if sBuf.count < sNeed { break }
                    switch try serverStep(sBuf, 0, sBuf.count) {
                    case .needMore(let k):
                        sNeed = k
                    case .done:
                        Self.release(&sBuf)
                    }
                }
                boundary()
            }
            out.emit(emitted..<n)
            return out.result
        } catch let error as Failure {
            failure = error
            throw error
        }
    }

    private var serverAtBoundary: Bool { sBuf.isEmpty && !sStream.active }

    /// The channel closed: files still open become transfers with result `incomplete`,
    /// requests still unanswered become activities with result `incomplete`.
    public func finish() {
        guard !finished else { return }
        finished = true
        var files: [ObjectIdentifier: OpenFile] = [:]
        for file in handles.values { files[ObjectIdentifier(file)] = file }
        var activities: [(Int, String, String)] = []
        for request in pending.values {
            switch request {
            case .close(_, let file): files[ObjectIdentifier(file)] = file
            case .activity(let kind, let detail, let serial): activities.append((serial, kind, detail))
            default: break
            }
        }
        let end = now()
        for file in files.values.sorted(by: { $0.serial < $1.serial }) {
            report(file, result: "incomplete", at: end)
        }
        for (_, kind, detail) in activities.sorted(by: { $0.0 < $1.0 }) {
            events.activity(kind, detail + ": incomplete")
        }
        handles.removeAll()
        pending.removeAll()
        Self.release(&cBuf)
        Self.release(&sBuf)
        pendingReplies.removeAll()
        cStream = Stream()
        sStream = Stream()
    }

    // MARK: Streaming

    /// Passes the stream's next bytes from `start`; returns where it stopped (the caller forwards
    /// `start..<end` when the stream does).
    private func pump(_ stream: inout Stream, _ input: [UInt8], _ start: Int, upload: Bool) -> Int {
        var i = start
        let avail = input.count - i
        if stream.hashLeft > 0 {
            let k = min(stream.hashLeft, avail)
            if stream.forward {
                if let file = stream.file {
                    if upload {
                        file.written += k
                        if file.writeHash != nil {
                            input.withUnsafeBytes { file.writeHash!.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[i..<(i + k)])) }
                        }
                    } else {
                        file.read += k
                        if file.readHash != nil {
                            input.withUnsafeBytes { file.readHash!.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[i..<(i + k)])) }
                        }
                    }
                }
            }
            stream.hashLeft -= k
            i += k
        } else {
            let k = min(stream.plainLeft, avail)
            stream.plainLeft -= k
            i += k
        }
        if !stream.active { stream.file = nil }
        return i
    }

    private static func release(_ buffer: inout [UInt8]) {
        if buffer.capacity > 64 * 1024 { buffer = [] } else { buffer.removeAll(keepingCapacity: true) }
    }

    // MARK: Framing

    /// Length and type of the frame starting at `base`; nil when fewer than 5 bytes are there.
    private func frame(_ b: [UInt8], _ base: Int, _ avail: Int) throws -> (total: Int, type: UInt8)? {
        guard avail >= 5 else { return nil }
        let length = Int(b[base]) << 24 | Int(b[base + 1]) << 16 | Int(b[base + 2]) << 8 | Int(b[base + 3])
        if length == 0 { throw Failure.malformed("SFTP packet of length 0") }
        if length > policy.maxPacket { throw Failure.malformed("SFTP packet of \(length) bytes exceeds the limit of \(policy.maxPacket)") }
        return (4 + length, b[base + 4])
    }

    private func clientStep(_ b: [UInt8], _ base: Int, _ avail: Int) throws -> Step {
        guard let (total, type) = try frame(b, base, avail) else { return .needMore(5) }
        if !sawInit && type != T.INIT { throw Failure.malformed("the SFTP client did not start with INIT (packet type \(type))") }
        switch type {
        case T.WRITE:
            // uint32 length, byte type, uint32 id, string handle, uint64 offset, string data
            if total < 13 { throw Failure.malformed("WRITE field exceeds its packet") }
            guard avail >= 13 else { return .needMore(13) }
            var r = Reader(b, base + 9, base + 13)
            let handleLength = Int(try r.u32())
            if handleLength > total - 25 { throw Failure.malformed("WRITE field exceeds its packet") }
            let head = 13 + handleLength + 12
            guard avail >= head else { return .needMore(head) }
            r = Reader(b, base + 5, base + head)
            let id = try r.u32()
            let handle = try r.string()
            let offset = try r.u64()
            let dataLength = Int(try r.u32())
            if dataLength > total - head { throw Failure.malformed("WRITE data exceeds its packet") }
            var stream = Stream(hashLeft: dataLength, plainLeft: total - head - dataLength)
            if let file = handles[HandleKey(b, handle)] {
                try expect(id, .write(file))
                file.writes += 1
                if file.writeHash != nil && offset != file.writeNext { file.writeHash = nil }
                file.writeNext = offset &+ UInt64(dataLength)
                stream.file = file
            } else if !policy.allowUpload {
                // Not a handle this auditor saw opened for writing: no upload may go through it.
                replies += Self.status(id: id, code: Status.PERMISSION_DENIED, message: Self.uploadRefusal)
                stream.forward = false
            }
            cStream = stream
            return .done(length: head, forward: stream.forward)
        case T.INIT, T.OPEN, T.CLOSE, T.READ, T.SETSTAT, T.FSETSTAT, T.REMOVE, T.MKDIR, T.RMDIR, T.RENAME, T.SYMLINK, T.EXTENDED:
            guard avail >= total else { return .needMore(total) }
            var r = Reader(b, base + 5, base + total)
            let forward = try clientPacket(type, &r)
            return .done(length: total, forward: forward)
        default:
            // Not audited (STAT, READDIR, ...) or unknown: passes as it comes.
            cStream = Stream(hashLeft: 0, plainLeft: total - 5)
            return .done(length: 5, forward: true)
        }
    }

    /// Judges one complete request; false when it must not reach the asset.
    private func clientPacket(_ type: UInt8, _ r: inout Reader) throws -> Bool {
        if type == T.INIT {
            _ = try r.u32()
            sawInit = true
            return true
        }
        let id = try r.u32()
        switch type {
        case T.OPEN:
            let path = try r.text()
            let pflags = try r.u32()
            let writes = pflags & (Flag.WRITE | Flag.CREAT | Flag.TRUNC | Flag.APPEND) != 0
            // Without WRITE the server opens read-only (O_RDONLY is 0): readable.
            let readable = pflags & Flag.READ != 0 || pflags & Flag.WRITE == 0
            var refusal: (TransferDirection, String)?
            if writes && !policy.allowUpload {
                refusal = (.upload, Self.uploadRefusal)
            } else if readable && !policy.allowDownload {
                refusal = (.download, Self.downloadRefusal)
            }
            if let (direction, message) = refusal {
                replies += Self.status(id: id, code: Status.PERMISSION_DENIED, message: message)
                let time = now()
                events.transfer(AuditedTransfer(direction: direction, path: path, bytes: 0, started: time, ended: time,
                                                result: "refused", sha256: nil))
                return false
            }
            try expect(id, .open(path: path, pflags: pflags, started: now(), serial: nextSerial()))
        case T.CLOSE:
            let handle = try r.string()
            let key = HandleKey(r.bytes, handle)
            if let file = handles[key] { try expect(id, .close(key, file)) }
        case T.READ:
            let handle = try r.string()
            let offset = try r.u64()
            _ = try r.u32()
            if let file = handles[HandleKey(r.bytes, handle)] {
                file.reads += 1
                try expect(id, .read(file, offset: offset))
            } else if !policy.allowDownload {
                replies += Self.status(id: id, code: Status.PERMISSION_DENIED, message: Self.downloadRefusal)
                return false
            }
        case T.SETSTAT:
            let path = try r.text()
            try activity(id, "setstat", path + Self.describe(attributes: &r))
        case T.FSETSTAT:
            let handle = try r.string()
            let key = HandleKey(r.bytes, handle)
            let path = handles[key]?.path ?? "handle \(key.hex)"
            try activity(id, "setstat", path + Self.describe(attributes: &r))
        case T.REMOVE:
            try activity(id, "remove", try r.text())
        case T.MKDIR:
            let path = try r.text()
            try activity(id, "mkdir", path + Self.describe(attributes: &r))
        case T.RMDIR:
            try activity(id, "rmdir", try r.text())
        case T.RENAME:
            let old = try r.text(), new = try r.text()
            try activity(id, "rename", "\(old) -> \(new)")
        case T.SYMLINK:
            // OpenSSH sends target then link path (the draft's order reversed; see its PROTOCOL file).
            let target = try r.text(), link = try r.text()
            try activity(id, "symlink", "\(link) -> \(target)")
        case T.EXTENDED:
            return try extended(id, &r)
        default:
            break
        }
        return true
    }

    private func extended(_ id: UInt32, _ r: inout Reader) throws -> Bool {
        let name = try r.string()
        switch String(decoding: r.bytes[name], as: UTF8.self) {
        case "posix-rename@openssh.com":
            let old = try r.text(), new = try r.text()
            try activity(id, "rename", "\(old) -> \(new)")
        case "hardlink@openssh.com":
            let old = try r.text(), new = try r.text()
            try activity(id, "hardlink", "\(new) -> \(old)")
        case "lsetstat@openssh.com":
            let path = try r.text()
            try activity(id, "setstat", path + Self.describe(attributes: &r))
        case "copy-data":
            // read handle, uint64 offset, uint64 length, write handle, uint64 offset: a copy on the asset.
            let from = HandleKey(r.bytes, try r.string())
            _ = try r.u64()
            _ = try r.u64()
            let to = HandleKey(r.bytes, try r.string())
            _ = try r.u64()
            let source = handles[from], target = handles[to]
            if target == nil && !policy.allowUpload {
                replies += Self.status(id: id, code: Status.PERMISSION_DENIED, message: Self.uploadRefusal)
                return false
            }
            if let target {
                // Content the gateway never sees: the written file's hash cannot be known.
                target.writes += 1
                target.writeHash = nil
            }
            try activity(id, "copy", "\(source?.path ?? "handle \(from.hex)") -> \(target?.path ?? "handle \(to.hex)")")
        default:
            break
        }
        return true
    }

    private func serverStep(_ b: [UInt8], _ base: Int, _ avail: Int) throws -> Step {
        guard let (total, type) = try frame(b, base, avail) else { return .needMore(5) }
        if !sawVersion && type != T.VERSION { throw Failure.malformed("the SFTP server did not start with VERSION (packet type \(type))") }
        switch type {
        case T.DATA:
            // uint32 length, byte type, uint32 id, string data
            if total < 13 { throw Failure.malformed("DATA field exceeds its packet") }
            guard avail >= 13 else { return .needMore(13) }
            var r = Reader(b, base + 5, base + 13)
            let id = try r.u32()
            let dataLength = Int(try r.u32())
            if dataLength > total - 13 { throw Failure.malformed("DATA exceeds its packet") }
            var stream = Stream(hashLeft: dataLength, plainLeft: total - 13 - dataLength)
            if case .read(let file, let offset)? = pending.removeValue(forKey: id) {
                if file.readHash != nil && offset != file.readNext { file.readHash = nil }
                file.readNext = offset &+ UInt64(dataLength)
                stream.file = file
            }
            sStream = stream
            return .done(length: 13, forward: true)
        case T.VERSION, T.STATUS, T.HANDLE:
            guard avail >= total else { return .needMore(total) }
            var r = Reader(b, base + 5, base + total)
            try serverPacket(type, &r)
            return .done(length: total, forward: true)
        default:
            sStream = Stream(hashLeft: 0, plainLeft: total - 5)
            return .done(length: 5, forward: true)
        }
    }

    private func serverPacket(_ type: UInt8, _ r: inout Reader) throws {
        switch type {
        case T.VERSION:
            let version = try r.u32()
            if version != 3 { throw Failure.malformed("the asset speaks SFTP version \(version); only version 3 can be audited") }
            self.version = version
            sawVersion = true
        case T.HANDLE:
            let id = try r.u32()
            let handle = try r.string()
            if handle.count > Self.maxHandleBytes { throw Failure.malformed("SFTP handle of \(handle.count) bytes") }
            guard case .open(let path, let pflags, let started, let serial)? = pending.removeValue(forKey: id) else { return }
            let key = HandleKey(r.bytes, handle)
            if let previous = handles[key] {
                report(previous, result: "incomplete", at: now())
            } else if handles.count >= policy.maxOpenFiles {
                throw Failure.malformed("more than \(policy.maxOpenFiles) files open")
            }
            handles[key] = OpenFile(path: path, pflags: pflags, started: started, serial: serial)
        case T.STATUS:
            let id = try r.u32()
            let code = try r.u32()
            // Old servers may leave out message and language tag.
            let message = try (r.remaining >= 4 ? r.message() : "")
            guard let request = pending.removeValue(forKey: id) else { return }
            let result = code == Status.OK ? "ok" : (message.isEmpty ? Status.name(code) : "\(Status.name(code)): \(message)")
            switch request {
            case .open(let path, let pflags, let started, _):
                guard code != Status.OK else { return }
                let writes = pflags & (Flag.WRITE | Flag.CREAT | Flag.TRUNC | Flag.APPEND) != 0
                events.transfer(AuditedTransfer(direction: writes ? .upload : .download, path: path, bytes: 0,
                                                started: started, ended: now(), result: result, sha256: nil))
            case .read(let file, _):
                if code != Status.OK && code != Status.EOF && file.error == nil { file.error = result }
            case .write(let file):
                if code != Status.OK && file.error == nil { file.error = result }
            case .close(let key, let file):
                if handles[key] === file { handles[key] = nil }
                report(file, result: code == Status.OK ? (file.error ?? "ok") : result, at: now())
            case .activity(let kind, let detail, _):
                events.activity(kind, "\(detail): \(result)")
            }
        default:
            break
        }
    }

    // MARK: Bookkeeping

    private func nextSerial() -> Int {
        serial += 1
        return serial
    }

    private func expect(_ id: UInt32, _ request: Pending) throws {
        if pending.count >= policy.maxOutstandingRequests && pending[id] == nil {
            throw Failure.malformed("more than \(policy.maxOutstandingRequests) SFTP requests outstanding")
        }
        pending[id] = request
    }

    private func activity(_ id: UInt32, _ kind: String, _ detail: String) throws {
        try expect(id, .activity(kind: kind, detail: detail, serial: nextSerial()))
    }

    private func report(_ file: OpenFile, result: String, at end: Date) {
        if file.isUpload {
            events.transfer(AuditedTransfer(direction: .upload, path: file.path, bytes: file.written, started: file.started, ended: end,
                                            result: result, sha256: file.writeHash.map { TransferHex.string($0.finalize()) }))
        }
        if file.isDownload {
            events.transfer(AuditedTransfer(direction: .download, path: file.path, bytes: file.read, started: file.started, ended: end,
                                            result: result, sha256: file.readHash.map { TransferHex.string($0.finalize()) }))
        }
    }

    /// A STATUS packet, as the gateway sends it to the user.
    static func status(id: UInt32, code: UInt32, message: String) -> [UInt8] {
        let text = Array(message.utf8), language = Array("en".utf8)
        var p: [UInt8] = []
        p.reserveCapacity(4 + 1 + 4 + 4 + 4 + text.count + 4 + language.count)
        func u32(_ v: UInt32) { p += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
        u32(UInt32(1 + 4 + 4 + 4 + text.count + 4 + language.count))
        p.append(T.STATUS)
        u32(id)
        u32(code)
        u32(UInt32(text.count))
        p += text
        u32(UInt32(language.count))
        p += language
        return p
    }

    /// ` (mode 0644, uid 0 gid 0, size 10, atime 1 mtime 2)` for the attributes a SETSTAT/MKDIR
    /// carries; empty when there are none or they do not parse (the asset judges them).
    static func describe(attributes r: inout Reader) -> String {
        guard let flags = try? r.u32() else { return "" }
        var parts: [String] = []
        do {
            if flags & 0x01 != 0 { parts.append("size \(try r.u64())") }
            if flags & 0x02 != 0 { parts.append("uid \(try r.u32()) gid \(try r.u32())") }
            if flags & 0x04 != 0 { parts.append("mode 0" + String(try r.u32() & 0o7777, radix: 8)) }
            if flags & 0x08 != 0 { parts.append("atime \(try r.u32()) mtime \(try r.u32())") }
        } catch {
            return ""
        }
        return parts.isEmpty ? "" : " (" + parts.joined(separator: ", ") + ")"
    }

    // MARK: Reading fields

    struct Reader {
        let bytes: [UInt8]
        var position: Int
        let end: Int

        init(_ bytes: [UInt8], _ position: Int, _ end: Int) {
            self.bytes = bytes
            self.position = position
            self.end = end
        }

        var remaining: Int { end - position }

        mutating func u32() throws -> UInt32 {
            guard end - position >= 4 else { throw Failure.malformed("SFTP field exceeds its packet") }
            let b = bytes, p = position
            position += 4
            return UInt32(b[p]) << 24 | UInt32(b[p + 1]) << 16 | UInt32(b[p + 2]) << 8 | UInt32(b[p + 3])
        }

        mutating func u64() throws -> UInt64 {
            let high = try u32(), low = try u32()
            return UInt64(high) << 32 | UInt64(low)
        }

        /// A string's bytes as a range of `bytes`.
        mutating func string() throws -> Range<Int> {
            let length = Int(try u32())
            guard length <= end - position else { throw Failure.malformed("SFTP string exceeds its packet") }
            defer { position += length }
            return position..<(position + length)
        }

        /// A path: at most 4 KiB kept, decoded as UTF-8 (invalid bytes replaced).
        mutating func text() throws -> String {
            let range = try string()
            return String(decoding: bytes[range.lowerBound..<min(range.upperBound, range.lowerBound + SFTPAuditor.maxPathBytes)],
                          as: UTF8.self)
        }

        /// A server's message: at most 256 bytes, control characters blanked.
        mutating func message() throws -> String {
            let range = try string()
            let kept = bytes[range.lowerBound..<min(range.upperBound, range.lowerBound + SFTPAuditor.maxMessageBytes)]
            return String(String.UnicodeScalarView(String(decoding: kept, as: UTF8.self).unicodeScalars.map {
                $0.value < 0x20 || $0.value == 0x7F ? " " : $0
            }))
        }
    }
}
