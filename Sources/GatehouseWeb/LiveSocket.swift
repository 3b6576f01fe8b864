import Foundation
import GatehouseCore
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// `GET /api/v1/sessions/{id}/live`: a session's terminal as it happens, in the recording's own
/// shapes. Text messages carry asciicast v2 lines: first the header, then the current screen
/// (a resize to the owner's size and the screen's contents), then live output, resizes and
/// `"m"` notices. A player that replays recordings draws this too. A desktop session's stream
/// is `DesktopLiveSocket`'s.
enum LiveSocket {
    /// At most one message per this interval: output in between is batched.
    static let frameInterval: Duration = .milliseconds(20)
    static let batchLimit = 32 * 1024

    static func serve(api: API, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                      context: WebSocketRouterContext<WebContext>) async throws {
        let (caller, session): (API.Caller, ManagedSession)
        do {
            (caller, session) = try await api.authorizeLive(context.request, context.requestContext)
        } catch {
            try await outbound.close(.policyViolation, reason: "\(error)")
            return
        }
        if let desktop = session.desktop {
            try await DesktopLiveSocket.serve(api: api, caller: caller, session: session, desktop: desktop, inbound: inbound,
                                              outbound: outbound, context: context)
            return
        }
        guard let live = session.live else { return }
        let channel = context.requestContext.channel
        // A watcher needs little buffer; a small one makes a client that stopped reading show
        // as stalled within a second instead of after megabytes of kernel buffering.
        _ = try? await channel.setOption(ChannelOptions.socketOption(.so_sndbuf), value: 64 * 1024).get()
        let address = channel.remoteAddress?.ipAddress ?? "?"
        let (wakes, wake) = AsyncStream<Void>.makeStream(bufferingPolicy: .bufferingNewest(1))
        let watcher = live.attach(name: caller.user, wake: { wake.yield() }, cutLoose: { reason in
            api.logger.notice("live watcher cut loose", metadata: ["session": "\(live.sessionID.prefix(8))", "user": "\(caller.user)", "reason": "\(reason)"])
            channel.close(promise: nil)
            wake.finish()
        })
        let collaboration = api.audit.collaborationStarted(CollaborationRecord(sessionID: live.sessionID, user: caller.user, mode: "watch",
                                                                               remoteAddress: address, joined: Date()))
        api.audit.activity(sessionID: live.sessionID, Activity(.watched, "\(caller.user) started watching from \(address) (web)"))
        defer {
            watcher.detach()
            if let collaboration { api.audit.collaborationEnded(id: collaboration) }
            api.audit.activity(sessionID: live.sessionID, Activity(.left, "\(caller.user) stopped watching"))
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // Watching is read-only: messages are read only to notice the close.
                for try await _ in inbound {}
            }
            let clock = WriteClock()
            group.addTask {
                try await send(live: live, watcher: watcher, wakes: wakes, outbound: outbound, clock: clock)
            }
            group.addTask {
                // A watcher whose client stopped reading is cut loose; the session never waits.
                while true {
                    try await Task.sleep(for: .seconds(1))
                    guard clock.pending > live.options.stallLimit else { continue }
                    api.logger.notice("live watcher cut loose", metadata: ["session": "\(live.sessionID.prefix(8))", "user": "\(caller.user)",
                                                                        "reason": "not reading for \(Int(live.options.stallLimit)) s"])
                    channel.close(promise: nil)
                    return
                }
            }
            try await group.next()
            group.cancelAll()
        }
    }

    /// When the write in progress began: a client that stops reading leaves a write pending.
    final class WriteClock: @unchecked Sendable {
        private let lock = NSLock()
        private var since: Date?
        func start() { lock.withLock { since = Date() } }
        func stop() { lock.withLock { since = nil } }
        var pending: TimeInterval { lock.withLock { since.map { Date().timeIntervalSince($0) } ?? 0 } }
    }

    private static func send(live: LiveChannel, watcher: LiveWatcher, wakes: AsyncStream<Void>, outbound: WebSocketOutboundWriter,
                             clock: WriteClock) async throws {
        // Times count from the moment this watcher attached (the screen is at 0): a live
        // stream has no past. Each message is one asciicast line, which is what players
        // speaking the "v2.asciicast" WebSocket protocol expect; output arriving within one
        // frame interval is merged into one event.
        let origin = Date()
        var encoder = AsciicastEncoder()
        let size = live.currentSize
        let header = AsciicastEncoder.header(width: size.columns, height: size.rows, timestamp: Int(origin.timeIntervalSince1970),
                                             term: nil, title: "\(live.owner)@\(live.asset)")
        try await outbound.write(.text(String(decoding: header, as: UTF8.self).trimmingCharacters(in: .newlines)))
        var iterator = wakes.makeAsyncIterator()
        func now() -> Double { max(0, Date().timeIntervalSince(origin)) }
        func lines(_ bytes: [UInt8]) -> [String] {
            bytes.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
        }
        while !Task.isCancelled {
            switch watcher.read(limit: batchLimit) {
            case .nothing:
                guard await iterator.next() != nil else { return }
            case .ended(let reason):
                var out: [UInt8] = []
                encoder.finish(at: now(), to: &out)
                encoder.marker(reason, at: now(), to: &out)
                for line in lines(out) { try await outbound.write(.text(line)) }
                try await outbound.close(.normalClosure, reason: String(reason.prefix(100)))
                return
            case .events(let events):
                var out: [UInt8] = []
                var pendingOutput: [UInt8] = []
                let t = now()
                func flushOutput() {
                    guard !pendingOutput.isEmpty else { return }
                    pendingOutput.withUnsafeBytes { encoder.output($0, at: t, to: &out) }
                    pendingOutput.removeAll(keepingCapacity: true)
                }
                for e in events {
                    switch e.event {
                    case .output(let bytes):
                        pendingOutput += bytes
                    case let .resize(columns, rows):
                        flushOutput()
                        encoder.resize(columns: columns, rows: rows, at: t, to: &out)
                    case let .screen(bytes, columns, rows):
                        pendingOutput.removeAll() // superseded by the screen
                        encoder = AsciicastEncoder() // a partial character before the jump is gone
                        encoder.resize(columns: columns, rows: rows, at: t, to: &out)
                        bytes.withUnsafeBytes { encoder.output($0, at: t, to: &out) }
                    case .notice(let text):
                        flushOutput()
                        encoder.marker(text, at: t, to: &out)
                    }
                }
                flushOutput()
                clock.start()
                for line in lines(out) { try await outbound.write(.text(line)) }
                clock.stop()
                try await Task.sleep(for: frameInterval)
            }
        }
    }
}
