import Foundation
import GatehouseCore
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// `GET /api/v1/sessions/{id}/live` on a desktop (RDP) session: the header line as a text
/// message, then binary messages of whole `.gdr` records (docs/desktop-recording.md): the last
/// KEYFRAME and every record since, then new records as the session draws them.
///
/// `DesktopLive` hands records over on the recorder's thread and must never wait: they go into
/// this watcher's outbox and a task writes them out. A watcher whose client stops reading is
/// cut loose (its `send` answers false, the connection closes): when a write has been pending
/// for `stallLimit`, or when more than `queueLimit` bytes wait for it.
enum DesktopLiveSocket {
    static let stallLimit: TimeInterval = 10
    static let queueLimit = 64 << 20
    /// Record batches waiting together are sent as one message up to about this size.
    static let messageLimit = 1 << 20

    static func serve(api: API, caller: API.Caller, session: ManagedSession, desktop: DesktopLive, inbound: WebSocketInboundStream,
                      outbound: WebSocketOutboundWriter, context: WebSocketRouterContext<WebContext>) async throws {
        let sessionID = session.summary.id.description
        let short = String(sessionID.prefix(8))
        let channel = context.requestContext.channel
        // A watcher needs little buffer; a small one makes a client that stopped reading show
        // as stalled soon instead of after megabytes of kernel buffering.
        _ = try? await channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: 64 * 1024).get()
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let outbox = Outbox(limit: queueLimit)
        let name = api.desktopWatchers.add(session: sessionID, user: caller.user)
        let collaboration = api.audit.collaborationStarted(CollaborationRecord(sessionID: sessionID, user: caller.user, mode: "watch",
                                                                               remoteAddress: address, joined: Date()))
        api.audit.activity(sessionID: sessionID, Activity(.watched, "\(caller.user) started watching from \(address) (web)"))
        @Sendable func cutLoose(_ reason: String) {
            api.logger.notice("live watcher cut loose", metadata: ["session": "\(short)", "user": "\(caller.user)", "reason": "\(reason)"])
            outbox.close()
            channel.close(promise: nil)
        }
        let overflow = "more than \(queueLimit >> 20) MiB waiting"
        // Attaching delivers the backlog at once (into the outbox); the writer sends the header
        // first. A watcher too far behind is let go at once: its writer may be stuck in a write.
        let token = desktop.attach { data in
            if outbox.push(data) { return true }
            if outbox.reportOverflow() { cutLoose(overflow) }
            return false
        }
        defer {
            desktop.detach(token)
            outbox.close()
            api.desktopWatchers.remove(name)
            if let collaboration { api.audit.collaborationEnded(id: collaboration) }
            api.audit.activity(sessionID: sessionID, Activity(.left, "\(caller.user) stopped watching"))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Watching is read-only: messages are read only to notice the close.
                for try await _ in inbound {}
            }
            let clock = LiveSocket.WriteClock()
            group.addTask {
                try await write(header: desktop.header, outbox: outbox, outbound: outbound, clock: clock)
                if outbox.reportOverflow() { cutLoose(overflow) }
            }
            group.addTask {
                // A watcher whose client stopped reading is cut loose; the session never waits.
                // A session that ended or went away without an END closes the stream too.
                var idleSinceEnd = 0
                while true {
                    try await Task.sleep(for: .seconds(1))
                    if clock.pending > stallLimit {
                        cutLoose("not reading for \(Int(stallLimit)) s")
                        return
                    }
                    let gone = desktop.isEnded || api.access.registry.session(sessionID) == nil
                    idleSinceEnd = gone && outbox.isEmpty && clock.pending == 0 ? idleSinceEnd + 1 : 0
                    if idleSinceEnd >= 2 {
                        try? await outbound.close(.normalClosure, reason: "the session ended")
                        return
                    }
                }
            }
            defer {
                outbox.close() // the writer may be waiting for records
                group.cancelAll()
            }
            try await group.next()
        }
    }

    /// Sends the header, then the outbox's records until the session's END or the outbox closes.
    private static func write(header: Data, outbox: Outbox, outbound: WebSocketOutboundWriter, clock: LiveSocket.WriteClock) async throws {
        clock.start()
        try await outbound.write(.text(String(decoding: header, as: UTF8.self)))
        clock.stop()
        while !Task.isCancelled {
            let messages = outbox.take(messageLimit: messageLimit)
            if messages.isEmpty {
                if outbox.isClosed { return }
                await outbox.wait()
                continue
            }
            var ended = false
            clock.start()
            for message in messages {
                try await outbound.writeBinaryMessage(ByteBuffer(bytes: message))
                ended = ended || DesktopRecords.containsEnd(message)
            }
            clock.stop()
            if ended {
                try await outbound.close(.normalClosure, reason: "the session ended")
                return
            }
        }
    }

    /// What waits for one watcher: filled on the recorder's thread (never blocking), emptied
    /// by the writer task.
    final class Outbox: @unchecked Sendable {
        private let lock = NSLock()
        private let limit: Int
        private var chunks: [Data] = []
        private var bytes = 0
        private var closed = false
        private var overflow = false
        private var overflowReported = false
        private var waiter: CheckedContinuation<Void, Never>?
        private var woken = false

        init(limit: Int) { self.limit = limit }

        /// Queues whole records; false once the watcher is gone or too far behind.
        func push(_ data: Data) -> Bool {
            let (accepted, resume): (Bool, CheckedContinuation<Void, Never>?) = lock.withLock {
                guard !closed else { return (false, nil) }
                if bytes + data.count > limit {
                    closed = true
                    overflow = true
                    chunks.removeAll()
                    bytes = 0
                } else {
                    chunks.append(data)
                    bytes += data.count
                }
                return (!overflow, wake())
            }
            resume?.resume()
            return accepted
        }

        func close() {
            let resume = lock.withLock {
                closed = true
                return wake()
            }
            resume?.resume()
        }

        /// Lock held: the waiting writer, if any, to resume outside the lock.
        private func wake() -> CheckedContinuation<Void, Never>? {
            woken = true
            defer { waiter = nil }
            return waiter
        }

        /// Returns when something was pushed or the outbox closed since the last `take`; a
        /// cancelled writer closes it (the watcher is going away).
        func wait() async {
            await withTaskCancellationHandler {
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let ready = lock.withLock {
                        if woken || closed { return true }
                        waiter = continuation
                        return false
                    }
                    if ready { continuation.resume() }
                }
            } onCancel: {
                close()
            }
        }

        /// Everything queued, joined into messages of about `messageLimit` bytes (a batch is
        /// never split: each holds whole records).
        func take(messageLimit: Int) -> [Data] {
            let taken: [Data] = lock.withLock {
                woken = false
                defer { chunks.removeAll(); bytes = 0 }
                return chunks
            }
            var messages: [Data] = []
            for chunk in taken {
                if let last = messages.last, last.count + chunk.count <= messageLimit {
                    messages[messages.count - 1].append(chunk)
                } else {
                    messages.append(chunk)
                }
            }
            return messages
        }

        /// True once, after the outbox overflowed: whoever sees it lets the watcher go.
        func reportOverflow() -> Bool {
            lock.withLock {
                guard overflow, !overflowReported else { return false }
                overflowReported = true
                return true
            }
        }

        var isEmpty: Bool { lock.withLock { chunks.isEmpty } }
        var isClosed: Bool { lock.withLock { closed } }
        var overflowed: Bool { lock.withLock { overflow } }
    }
}

/// Who watches which online desktop session (for the session's `watchers`).
final class DesktopWatcherNames: @unchecked Sendable {
    struct Entry { var session: String; var user: String }
    private let lock = NSLock()
    private var entries: [Int: Entry] = [:]
    private var next = 1

    func add(session: String, user: String) -> Int {
        lock.withLock {
            defer { next += 1 }
            entries[next] = Entry(session: session, user: user)
            return next
        }
    }

    func remove(_ token: Int) { lock.withLock { _ = entries.removeValue(forKey: token) } }

    func names(session: String) -> [String] {
        lock.withLock { entries.values.filter { $0.session == session }.map(\.user).sorted() }
    }

    var count: Int { lock.withLock { entries.count } }
}

/// Walking `.gdr` records without decoding them.
enum DesktopRecords {
    static let headerSize = 9
    static let endType: UInt8 = 6

    /// Whether whole records `data` hold an END.
    static func containsEnd(_ data: Data) -> Bool {
        var offset = data.startIndex
        while data.endIndex - offset >= headerSize {
            if data[offset] == endType { return true }
            offset += headerSize + Int(readLE32(data, offset + 1))
        }
        return false
    }

    static func readLE32<C: Collection>(_ bytes: C, _ at: C.Index) -> UInt32 where C.Element == UInt8, C.Index == Int {
        UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
    }

    /// Passes a recording through in chunks, holding back a record (or header line) not yet
    /// whole: a recording still being written is served up to its last whole record.
    struct WholeRecords {
        private var headerDone = false
        private var held: [UInt8] = []
        /// A record claiming more than this is corruption: nothing after it is passed on.
        static let maxPayload = 64 << 20
        private var broken = false

        mutating func feed(_ chunk: [UInt8]) -> [UInt8] {
            guard !broken else { return [] }
            held += chunk
            var offset = 0
            if !headerDone {
                guard let newline = held.firstIndex(of: 0x0A) else {
                    if held.count > 1 << 20 { broken = true; held = [] }
                    return []
                }
                headerDone = true
                offset = newline + 1
            }
            while held.count - offset >= headerSize {
                let length = Int(readLE32(held, offset + 1))
                if length > Self.maxPayload { broken = true; break }
                guard held.count - offset - headerSize >= length else { break }
                offset += headerSize + length
            }
            let whole = Array(held[..<offset])
            held.removeFirst(offset)
            if broken { held = [] }
            return whole
        }
    }
}

/// `GET /api/v1/sessions/{id}/recording` of a desktop session: the `.gdr` file as it is on
/// disk (decompressed if kept gzipped), streamed.
enum DesktopRecordingFile {
    static let contentType = "application/vnd.gatehouse.desktop"

    static func response(path: String, compressed: Bool, sessionID: String, wholeRecordsOnly: Bool) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = contentType
        headers[.contentDisposition] = "attachment; filename=\"\(sessionID).gdr\""
        headers[.cacheControl] = "no-store"
        let body = ResponseBody { writer in
            let stream = try RecordingStream(path: path, compressed: compressed, wholeLinesOnly: false)
            var cutter = DesktopRecords.WholeRecords()
            while let chunk = try stream.next() {
                let out = wholeRecordsOnly ? cutter.feed(chunk) : chunk
                if !out.isEmpty { try await writer.write(ByteBuffer(bytes: out)) }
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }
}
