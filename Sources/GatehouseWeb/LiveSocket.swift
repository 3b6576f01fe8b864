import Foundation
import GatehouseCore
import Hummingbird
import HummingbirdWebSocket
import NIOCore

/// `GET /api/v1/sessions/{id}/live`: a session's terminal as it happens, in the recording's own
/// shapes. Text messages carry asciicast v2 lines: first the header, then the current screen
/// (a resize to the owner's size and the screen's contents), then live output, resizes and
/// `"m"` notices. A player that replays recordings draws this too.
enum LiveSocket {
    /// At most one message per this interval: output in between is batched.
    static let frameInterval: Duration = .milliseconds(20)
    static let batchLimit = 256 * 1024

    static func serve(api: API, inbound: WebSocketInboundStream, outbound: WebSocketOutboundWriter,
                      context: WebSocketRouterContext<WebContext>) async throws {
        let (caller, session): (API.Caller, ManagedSession)
        do {
            (caller, session) = try await api.authorizeLive(context.request, context.requestContext)
        } catch {
            try await outbound.close(.policyViolation, reason: "\(error)")
            return
        }
        guard let live = session.live else { return }
        let channel = context.requestContext.channel
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
            group.addTask {
                try await send(live: live, watcher: watcher, wakes: wakes, outbound: outbound)
            }
            try await group.next()
            group.cancelAll()
        }
    }

    private static func send(live: LiveChannel, watcher: LiveWatcher, wakes: AsyncStream<Void>, outbound: WebSocketOutboundWriter) async throws {
        var encoder = AsciicastEncoder()
        let size = live.currentSize
        let header = AsciicastEncoder.header(width: size.columns, height: size.rows, timestamp: Int(live.started.timeIntervalSince1970),
                                             term: nil, title: "\(live.owner)@\(live.asset)")
        try await outbound.write(.text(String(decoding: header, as: UTF8.self)))
        var iterator = wakes.makeAsyncIterator()
        while !Task.isCancelled {
            switch watcher.read(limit: batchLimit) {
            case .nothing:
                guard await iterator.next() != nil else { return }
            case .ended(let reason):
                var out: [UInt8] = []
                encoder.finish(at: Date().timeIntervalSince(live.started), to: &out)
                encoder.marker(reason, at: Date().timeIntervalSince(live.started), to: &out)
                try await outbound.write(.text(String(decoding: out, as: UTF8.self)))
                try await outbound.close(.normalClosure, reason: String(reason.prefix(100)))
                return
            case .events(let events):
                var out: [UInt8] = []
                for e in events {
                    switch e.event {
                    case .output(let bytes):
                        bytes.withUnsafeBytes { encoder.output($0, at: e.time, to: &out) }
                    case let .resize(columns, rows):
                        encoder.resize(columns: columns, rows: rows, at: e.time, to: &out)
                    case let .screen(bytes, columns, rows):
                        encoder = AsciicastEncoder() // a partial character before the jump is gone
                        encoder.resize(columns: columns, rows: rows, at: e.time, to: &out)
                        bytes.withUnsafeBytes { encoder.output($0, at: e.time, to: &out) }
                    case .notice(let text):
                        encoder.marker(text, at: e.time, to: &out)
                    }
                }
                if !out.isEmpty { try await outbound.write(.text(String(decoding: out, as: UTF8.self))) }
                try await Task.sleep(for: frameInterval)
            }
        }
    }
}
