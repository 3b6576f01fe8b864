import CLibSSH
import Foundation
import GatehouseCore

/// `watch:ID` or `join:CODE` in place of an asset in the login name.
enum WatchRequest: Equatable {
    case watch(String)
    case join(String)

    init?(asset: String) {
        if asset.hasPrefix("watch:") { self = .watch(String(asset.dropFirst(6))) } else if asset.hasPrefix("join:") { self = .join(String(asset.dropFirst(5))) } else { return nil }
    }
}

/// Watching (read-only) or joining (read or write) another user's online session from a
/// terminal. The watched session is never resized: the watcher sees it at its owner's size.
struct Watch {
    var watcher: LiveWatcher
    var sessionID: String
    var collaboration: Int64?
    /// Bytes for the watcher's terminal that its SSH window has not taken yet.
    var pending: [UInt8] = []
    var ending: String?
    /// Started from the menu: leaving goes back to it.
    var returnToMenu = false
}

/// Ctrl-]: leaves a watched or joined session (as telnet's escape does).
let leaveKey: UInt8 = 0x1D

extension GatewayChannel {
    var sessionAccess: SessionAccess {
        SessionAccess(directory: connection.context.directory, registry: connection.context.registry, audit: connection.context.audit)
    }

    func startWatch(_ request: WatchRequest, returnToMenu: Bool = false) {
        guard program == .shell, pty != nil else {
            fail("watching needs a terminal: ssh -t \(login.user)@\(login.asset ?? "")@gateway", activity: .channelRefused)
            return
        }
        let access = sessionAccess
        switch request {
        case .watch(let id):
            guard access.mayWatch(login.user) else {
                fail("you may not watch sessions (auditors and admins may)", activity: .channelRefused)
                return
            }
            guard let session = access.registry.session(id), let live = session.live else {
                fail("no online session \"\(CommandExtractor.printable(id))\" to watch", activity: .channelRefused)
                return
            }
            attach(to: session, live: live, mode: "watch", canWrite: false, returnToMenu: returnToMenu)
        case .join(let code):
            switch access.resolveInvite(code, user: login.user) {
            case .failure(let refusal):
                connection.context.logger.warning("join refused", metadata: ["user": "\(login.user)", "from": "\(connection.peer)", "reason": "\(refusal)"])
                fail("cannot join: \(refusal)", activity: .channelRefused)
            case .success(let (share, session)):
                guard let live = session.live else { fail("cannot join: \(SessionAccess.Refusal.sessionEnded)", activity: .channelRefused); return }
                attach(to: session, live: live, mode: share.mode.rawValue, canWrite: share.mode == .write)
            }
        }
    }

    private func attach(to session: ManagedSession, live: LiveChannel, mode: String, canWrite: Bool, returnToMenu: Bool = false) {
        let summary = session.summary
        let queue = connection.queue
        weak let owner = connection
        weak let me = self
        let watcher = live.attach(name: login.user, canWrite: canWrite,
                                  wake: { queue.async { owner?.pump() } },
                                  cutLoose: { reason in queue.async { me?.watchCutLoose(reason) } })
        let trail = connection.context.audit
        let id = trail.collaborationStarted(CollaborationRecord(sessionID: summary.id.description, user: login.user, mode: mode,
                                                                remoteAddress: connection.peer, joined: Date()))
        trail.activity(sessionID: summary.id.description, Activity(mode == "watch" ? .watched : .joined,
                                                                   "\(login.user) \(mode == "watch" ? "started watching" : "joined (\(mode))") from \(connection.peer)"))
        if mode != "watch" { live.announce("\(login.user) joined this session (\(mode == "write" ? "can type" : "read-only"))") }
        connection.logger.info("watching", metadata: ["user": "\(login.user)", "session": "\(summary.id.short)", "mode": "\(mode)"])
        let what = canWrite ? "Joined" : (mode == "watch" ? "Watching" : "Joined (read-only)")
        let intro = "\u{1b}[2J\u{1b}[H\(what) session \(summary.id.short) of \(summary.user) on \(summary.asset ?? "?"). Press Ctrl-] to leave.\r\n"
        phase = .watching(Watch(watcher: watcher, sessionID: summary.id.description, collaboration: id, pending: Array(intro.utf8), returnToMenu: returnToMenu))
    }

    /// One round for a watcher: their keys in, the session's screen out.
    func pumpWatch(_ watch: inout Watch) -> Bool {
        if clientClosed {
            endWatch(watch)
            phase = .finished
            return true
        }
        var moved = false
        // Keys: only the leave key, and a write-mode joiner's typing, count.
        let available = ssh_channel_poll(channel, 0)
        if available == SSH_EOF || available == SSH_ERROR {
            endWatch(watch)
            finishClient(status: 0)
            return true
        }
        if available > 0 {
            let want = Int(min(available, 1 << 20))
            var n: Int32 = 0
            let bytes = [UInt8](unsafeUninitializedCapacity: want) { buffer, initialized in
                n = ssh_channel_read_nonblocking(channel, buffer.baseAddress, UInt32(want), 0)
                initialized = max(0, Int(n))
            }
            if n > 0 {
                moved = true
                if let cut = bytes.firstIndex(of: leaveKey) {
                    watch.watcher.type(Array(bytes[..<cut]))
                    leave(watch, message: "Left the session.")
                    return true
                }
                watch.watcher.type(bytes)
            }
        }
        // Output, as far as the watcher's window goes; what does not fit waits here and the
        // live channel skips the watcher ahead if it falls too far behind.
        while true {
            if !watch.pending.isEmpty {
                guard sendWhatFits(&watch.pending, to: channel) else { break }
                moved = true
                continue
            }
            if let ending = watch.ending {
                leave(watch, message: "gatehouse: \(ending)")
                return true
            }
            switch watch.watcher.read(limit: max(4096, Int(ssh_channel_window_size(channel)))) {
            case .nothing:
                return moved
            case .ended(let reason):
                watch.ending = reason
            case .events(let events):
                for e in events {
                    switch e.event {
                    case .output(let bytes): watch.pending += bytes
                    case .screen(let bytes, _, _): watch.pending += bytes
                    case .notice(let text): watch.pending += Array("\r\n[gatehouse: \(text)]\r\n".utf8)
                    case .resize: break // the watcher keeps their own size; full-screen programs redraw
                    }
                }
            }
        }
        return moved
    }

    private func leave(_ watch: Watch, message: String) {
        endWatch(watch)
        if watch.returnToMenu {
            // On the menu's own stream, so the two arrive in order.
            write(Array("\r\n\(message)\r\n".utf8))
            showMenu(note: nil)
        } else {
            writeStderr("\r\n\(message)\n")
            finishClient(status: 0)
        }
    }

    func endWatch(_ watch: Watch) {
        watch.watcher.detach()
        let trail = connection.context.audit
        if let id = watch.collaboration { trail.collaborationEnded(id: id) }
        trail.activity(sessionID: watch.sessionID, Activity(.left, "\(login.user) left"))
        if watch.watcher.canWrite || !isWatchOnly { watch.watcher.session.announce("\(login.user) left this session") }
    }

    private var isWatchOnly: Bool {
        if case .watch? = login.asset.flatMap(WatchRequest.init(asset:)) { return true }
        return false
    }

    /// The owner typed `~+` or `~*`: an invite valid for an hour, printed for them only
    /// (and kept out of the recording: the code is a secret).
    func createInvite(_ request: ShareEscape.Request) {
        guard let id = audit?.id else { return }
        let mode: ShareRecord.Mode = request == .writeInvite ? .write : .read
        let text: String
        do {
            let (code, share) = try sessionAccess.share(sessionID: id, mode: mode, validFor: 3600, users: [], by: login.user)
            text = "\r\ngatehouse: invite code \(code) (\(mode == .write ? "can type" : "read-only"), valid until \(SessionAccess.time(share.expires)));"
                + " join with: ssh -t USER@join:\(code)@GATEWAY\r\n"
        } catch {
            text = "\r\ngatehouse: cannot create an invite: \(error)\r\n"
        }
        let bytes = Array(text.utf8)
        bytes.withUnsafeBytes { _ = ssh_channel_write_stderr(channel, $0.baseAddress, UInt32($0.count)) }
    }

    private func watchCutLoose(_ reason: String) {
        guard case var .watching(watch) = phase else { return }
        watch.ending = reason
        phase = .watching(watch)
        connection.pump()
    }
}
