import CLibSSH
import Dispatch
import Foundation
import GatehouseCore
import Logging

/// One user's SSH connection to the gateway: key exchange, authentication, and the session
/// channels it opens. Everything about it, including the asset legs of its channels, runs on
/// its own serial queue; libssh is non-blocking and Dispatch says when a socket is ready.
final class ClientConnection: ManagedSession, @unchecked Sendable {
    enum Phase { case keyExchange, authenticating, authenticated, closed }

    let id = SessionID()
    let queue: DispatchQueue
    let session: OpaquePointer
    /// libssh's poll context for this connection: the client session and its asset legs.
    let event: OpaquePointer
    let peer: String
    let context: GatewayContext
    let started = Date()
    private(set) var phase: Phase = .keyExchange
    private(set) var login: LoginName?
    private var inEvent = false
    private var kbdintUser = ""
    private var watcher: SocketWatcher?
    private var channels: [GatewayChannel] = []
    private var serverCallbacks: UnsafeMutablePointer<ssh_server_callbacks_struct>
    private var onClose: (() -> Void)?
    private var closeReason = "client disconnected"
    private let summaryLock = NSLock()
    private var summaryValue: SessionSummary
    var bytesFromClient = 0
    var bytesToClient = 0
    private(set) var authMethod = ""
    private(set) var clientSoftware = ""

    var logger: Logger {
        var l = context.logger
        l[metadataKey: "session"] = "\(id.short)"
        return l
    }

    init(session: OpaquePointer, fd: Int32, peer: String, context: GatewayContext, onClose: @escaping () -> Void) {
        self.session = session
        self.event = ssh_event_new()
        self.peer = peer
        self.context = context
        self.onClose = onClose
        self.queue = DispatchQueue(label: "gatehouse.session", target: .global(qos: .userInitiated))
        summaryValue = SessionSummary(id: id, user: "", asset: nil, account: nil, remoteAddress: peer, protocolName: "ssh", started: started)
        serverCallbacks = .allocate(capacity: 1)
        serverCallbacks.initialize(to: ssh_server_callbacks_struct())
        installCallbacks()
        ssh_set_blocking(session, 0)
        watcher = SocketWatcher(owning: fd, queue: queue) { [weak self] in self?.pump() }
        // Login grace time: a client that neither finishes key exchange nor logs in goes away.
        queue.asyncAfter(deadline: .now() + 60) { [weak self] in
            guard let self, self.phase == .keyExchange || self.phase == .authenticating else { return }
            self.logger.info("login timed out", metadata: ["from": "\(self.peer)"])
            self.close(reason: "login grace time exceeded")
        }
        queue.async { self.pump() }
        // A safety net, not the mechanism: events drive the relay. Once a second a quiet
        // connection is pumped anyway, so a wake-up lost in libssh's internals (a packet it
        // queued during a key re-exchange, say) costs a second, never a stalled session.
        let tick = DispatchSource.makeTimerSource(queue: queue)
        tick.schedule(deadline: .now() + 1, repeating: 1, leeway: .milliseconds(250))
        tick.setEventHandler { [weak self] in self?.pump() }
        tick.activate()
        self.tick = tick
    }

    private var tick: DispatchSourceTimer?

    deinit {
        serverCallbacks.deinitialize(count: 1)
        serverCallbacks.deallocate()
    }

    var summary: SessionSummary { summaryLock.withLock { summaryValue } }

    func updateSummary(_ change: (inout SessionSummary) -> Void) {
        summaryLock.withLock { change(&summaryValue) }
    }

    func emit(_ event: SessionEvent) {
        for sink in context.sinks { sink.session(id, didEmit: event) }
    }

    // MARK: Driving libssh

    /// Moves everything that can move: incoming packets, channel data both ways, pending output.
    /// Loops until a round changes nothing, so bytes libssh pulled off a socket never sit
    /// unnoticed waiting for an event that will not come.
    func pump() {
        guard phase != .closed else { return }
        if phase == .keyExchange {
            let rc = ssh_handle_key_exchange(session)
            if !inEvent {
                // libssh creates the session's poll handle during the first exchange step;
                // only then can it join the connection's poll context.
                inEvent = ssh_event_add_session(event, session) == SSH_OK
            }
            if rc == SSH_AGAIN {
                watcher?.wantsWrite(ssh_blocking_flush(session, 0) == SSH_AGAIN)
                return
            }
            guard rc == SSH_OK else {
                logger.info("key exchange failed", metadata: ["from": "\(peer)", "error": "\(LibSSH.errorText(session))"])
                close(reason: "key exchange failed")
                return
            }
            phase = .authenticating
        }
        var clientPending = false
        var rounds = 0
        while true {
            _ = ssh_event_dopoll(event, 0)
            clientPending = ssh_blocking_flush(session, 0) == SSH_AGAIN
            var progress = false
            for channel in channels where channel.pump() { progress = true }
            rounds += 1
            if !progress || phase == .closed || rounds > 256 { break }
        }
        if phase == .closed { return }
        channels.removeAll { channel in
            guard channel.isDone else { return false }
            channel.release()
            return true
        }
        watcher?.wantsWrite(clientPending)
        for channel in channels { channel.armUpstreamWrites() }
        if ssh_is_connected(session) == 0 || (ssh_get_status(session) & (SSH_CLOSED | SSH_CLOSED_ERROR)) != 0 {
            close(reason: closeReason)
        } else if rounds > 256 {
            queue.async { self.pump() }
        }
    }

    /// Shows `message` on every channel, then closes both legs of everything.
    func terminate(message: String, by actor: String) {
        queue.async {
            guard self.phase != .closed else { return }
            for channel in self.channels { channel.abort(message: message, by: actor) }
            _ = ssh_blocking_flush(self.session, 0)
            self.close(reason: "terminated by \(actor)")
        }
    }

    func close(reason: String) {
        guard phase != .closed else { return }
        let wasAuthenticated = phase == .authenticated
        phase = .closed
        tick?.cancel()
        tick = nil
        for channel in channels {
            channel.teardown()
            channel.release()
        }
        channels.removeAll()
        if wasAuthenticated {
            let s = summary
            logger.info("session end", metadata: [
                "user": "\(s.user)", "from": "\(peer)", "duration": "\(String(format: "%.1f", Date().timeIntervalSince(started)))s",
                "bytes_in": "\(bytesFromClient)", "bytes_out": "\(bytesToClient)", "reason": "\(reason)",
            ])
            emit(.activity(Activity(.disconnected, reason)))
        }
        let session = self.session
        let event = self.event
        let finish = { [self] in
            if inEvent { ssh_event_remove_session(event, session) }
            ssh_disconnect(session)
            ssh_free(session)
            ssh_event_free(event)
            onClose?()
            onClose = nil
            _ = self
        }
        if let watcher {
            self.watcher = nil
            watcher.cancel(then: finish)
        } else {
            finish()
        }
    }

    // MARK: Authentication

    private func installCallbacks() {
        let me = Unmanaged.passUnretained(self).toOpaque()
        serverCallbacks.pointee.size = MemoryLayout<ssh_server_callbacks_struct>.size
        serverCallbacks.pointee.userdata = me
        serverCallbacks.pointee.auth_password_function = { _, user, password, userdata in
            let c = Unmanaged<ClientConnection>.fromOpaque(userdata!).takeUnretainedValue()
            return c.authenticatePassword(user: user.map { String(cString: $0) } ?? "",
                                          password: password.map { String(cString: $0) } ?? "", method: "password")
        }
        serverCallbacks.pointee.auth_pubkey_function = { _, user, key, state, userdata in
            let c = Unmanaged<ClientConnection>.fromOpaque(userdata!).takeUnretainedValue()
            return c.authenticateKey(user: user.map { String(cString: $0) } ?? "", key: key, verified: state == SSH_PUBLICKEY_STATE_VALID.rawValue)
        }
        serverCallbacks.pointee.channel_open_request_session_function = { _, userdata in
            let c = Unmanaged<ClientConnection>.fromOpaque(userdata!).takeUnretainedValue()
            return c.openChannel()
        }
        ssh_set_server_callbacks(session, serverCallbacks)
        ssh_set_auth_methods(session, Int32(SSH_AUTH_METHOD_PUBLICKEY | SSH_AUTH_METHOD_PASSWORD | SSH_AUTH_METHOD_INTERACTIVE))
        ssh_set_message_callback(session, { _, message, userdata in
            let c = Unmanaged<ClientConnection>.fromOpaque(userdata!).takeUnretainedValue()
            return c.handleMessage(message!)
        }, me)
    }

    /// A hash to verify against when the user does not exist, so that unknown users take as
    /// long to refuse as wrong passwords.
    private static let decoyHash = PasswordHasher.hash(password: UUID().uuidString)

    private func authenticatePassword(user raw: String, password: String, method: String) -> Int32 {
        guard let name = LoginName(parsing: raw) else { return deny(raw, method: method, reason: "malformed login name") }
        if context.throttle.isLocked(user: name.user, address: peer) {
            return deny(raw, method: method, reason: "locked out after repeated failures", count: false)
        }
        guard let user = context.directory.user(named: name.user), let hash = user.passwordHash else {
            _ = PasswordHasher.verify(password: password, hash: Self.decoyHash)
            return deny(raw, method: method, reason: "unknown user or no password set")
        }
        guard PasswordHasher.verify(password: password, hash: hash) else {
            return deny(raw, method: method, reason: "wrong password")
        }
        return accept(name, method: method)
    }

    private func authenticateKey(user raw: String, key: OpaquePointer?, verified: Bool) -> Int32 {
        guard let name = LoginName(parsing: raw), let key,
              let user = context.directory.user(named: name.user),
              let blob = LibSSH.publicKeyBase64(key),
              user.authorizedKeys.contains(where: { $0.base64 == blob }) else {
            return Int32(SSH_AUTH_DENIED.rawValue)
        }
        if context.throttle.isLocked(user: name.user, address: peer) {
            return deny(raw, method: "publickey", reason: "locked out after repeated failures", count: false)
        }
        // Without a verified signature this is the client asking whether the key would do.
        guard verified else { return Int32(SSH_AUTH_SUCCESS.rawValue) }
        return accept(name, method: "publickey")
    }

    private func deny(_ raw: String, method: String, reason: String, count: Bool = true) -> Int32 {
        let user = LoginName(parsing: raw)?.user ?? raw
        logger.warning("login failed", metadata: ["user": "\(user)", "from": "\(peer)", "method": "\(method)", "reason": "\(reason)"])
        if count { GatehouseCounters.loginFailed(via: "ssh") }
        if count, context.throttle.recordFailure(user: user, address: peer) {
            logger.warning("login locked out", metadata: ["user": "\(user)", "from": "\(peer)"])
        }
        return Int32(SSH_AUTH_DENIED.rawValue)
    }

    private func accept(_ name: LoginName, method: String) -> Int32 {
        context.throttle.recordSuccess(user: name.user, address: peer)
        login = name
        phase = .authenticated
        let software = ssh_get_clientbanner(session).map { String(cString: $0) } ?? ""
        authMethod = method
        clientSoftware = software
        updateSummary { $0.user = name.user; $0.asset = name.asset; $0.account = name.account }
        logger.info("login", metadata: ["user": "\(name.user)", "from": "\(peer)", "method": "\(method)", "client": "\(software)"])
        emit(.activity(Activity(.authenticated, "\(name.user) by \(method) from \(peer)")))
        return Int32(SSH_AUTH_SUCCESS.rawValue)
    }

    /// Requests libssh has no callback for: keyboard-interactive logins, and everything we
    /// refuse (port forwarding, X11), which gets libssh's default refusal.
    private func handleMessage(_ message: OpaquePointer) -> Int32 {
        let type = ssh_message_type(message), subtype = ssh_message_subtype(message)
        if type == Int32(SSH_REQUEST_AUTH.rawValue), subtype == Int32(SSH_AUTH_METHOD_INTERACTIVE) {
            if ssh_message_auth_kbdint_is_response(message) == 0 {
                kbdintUser = ssh_message_auth_user(message).map { String(cString: $0) } ?? ""
            }
            // The response carries no user name; it answers the request that named one.
            let user = kbdintUser
            if ssh_message_auth_kbdint_is_response(message) != 0 {
                let answer = ssh_userauth_kbdint_getnanswers(session) >= 1
                    ? ssh_userauth_kbdint_getanswer(session, 0).map { String(cString: $0) } ?? "" : ""
                if authenticatePassword(user: user, password: answer, method: "keyboard-interactive") == Int32(SSH_AUTH_SUCCESS.rawValue) {
                    ssh_message_auth_reply_success(message, 0)
                    return 0
                }
                return 1
            }
            var prompt: UnsafePointer<CChar>? = nil
            var echo: CChar = 0
            "Password: ".withCString { p in
                prompt = p
                _ = withUnsafeMutablePointer(to: &prompt) { prompts in
                    ssh_message_auth_interactive_request(message, "Gatehouse login", "", 1, prompts, &echo)
                }
            }
            return 0
        }
        if type == Int32(SSH_REQUEST_CHANNEL.rawValue), subtype == Int32(SSH_CHANNEL_REQUEST_X11.rawValue),
           let ch = ssh_message_channel_request_channel(message) {
            channels.first { $0.channel == ch }?.notices.append("X11 forwarding is disabled on this gateway.")
        } else if type == Int32(SSH_REQUEST_CHANNEL_OPEN.rawValue) || type == Int32(SSH_REQUEST_GLOBAL.rawValue) {
            logger.notice("refused forwarding request", metadata: ["user": "\(login?.user ?? "-")", "from": "\(peer)"])
            emit(.activity(Activity(.channelRefused, "port forwarding request refused")))
        }
        return 1
    }

    private func openChannel() -> OpaquePointer? {
        guard phase == .authenticated, let login, let channel = ssh_channel_new(session) else { return nil }
        channels.append(GatewayChannel(connection: self, channel: channel, login: login))
        return channel
    }
}
