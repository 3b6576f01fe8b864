import CLibSSH
import Foundation

/// The asset side of one relayed channel: a non-blocking libssh session with one open
/// channel. Confined to the owning connection's queue once handed over.
final class UpstreamLeg: @unchecked Sendable {
    let session: OpaquePointer
    let channel: OpaquePointer
    let banner: String?
    let fingerprint: String
    var watcher: SocketWatcher?
    /// This leg's own libssh poll context: processing the asset's packets never touches the
    /// client's socket, and the two sessions' lifetimes stay independent.
    private(set) var event: OpaquePointer?
    private var callbacks: UnsafeMutablePointer<ssh_channel_callbacks_struct>?

    /// Exit status or signal the asset reported for the channel.
    enum Exit: Equatable {
        case status(Int32)
        case signal(name: String, coreDumped: Bool, message: String)
    }
    var exit: Exit?
    private var isShutdown = false

    init(session: OpaquePointer, channel: OpaquePointer, banner: String?, fingerprint: String) {
        self.session = session
        self.channel = channel
        self.banner = banner
        self.fingerprint = fingerprint
        let cb = UnsafeMutablePointer<ssh_channel_callbacks_struct>.allocate(capacity: 1)
        cb.initialize(to: ssh_channel_callbacks_struct())
        cb.pointee.size = MemoryLayout<ssh_channel_callbacks_struct>.size
        cb.pointee.userdata = Unmanaged.passUnretained(self).toOpaque()
        cb.pointee.channel_exit_status_function = { _, _, status, userdata in
            guard let userdata else { return }
            Unmanaged<UpstreamLeg>.fromOpaque(userdata).takeUnretainedValue().exit = .status(Int32(bitPattern: UInt32(truncatingIfNeeded: status)))
        }
        cb.pointee.channel_exit_signal_function = { _, _, signal, core, message, _, userdata in
            guard let userdata else { return }
            Unmanaged<UpstreamLeg>.fromOpaque(userdata).takeUnretainedValue().exit = .signal(
                name: signal.map { String(cString: $0) } ?? "KILL", coreDumped: core != 0,
                message: message.map { String(cString: $0) } ?? "")
        }
        ssh_set_channel_callbacks(channel, cb)
        callbacks = cb
    }

    var fd: Int32 { ssh_get_fd(session) }

    /// Joins a poll context of its own; from then on `poll()` processes what the asset sent.
    func attachEvent() {
        guard event == nil, let e = ssh_event_new() else { return }
        if ssh_event_add_session(e, session) == SSH_OK { event = e } else { ssh_event_free(e) }
    }

    /// Lets libssh read and process whatever the asset sent, without waiting.
    func poll() {
        if let event { _ = ssh_event_dopoll(event, 0) }
    }

    var isConnected: Bool {
        ssh_is_connected(session) != 0 && (ssh_get_status(session) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0
    }

    /// Stops watching, closes the channel and the connection; libssh closes the socket only
    /// after Dispatch has let go of it.
    func shutdown() {
        guard !isShutdown else { return }
        isShutdown = true
        let finish = { [self] in
            if ssh_channel_is_closed(channel) == 0 { ssh_channel_close(channel) }
            ssh_remove_channel_callbacks(channel, callbacks)
            // ssh_disconnect frees the session's channels.
            if let event { ssh_event_remove_session(event, session) }
            ssh_disconnect(session)
            ssh_free(session)
            if let event { ssh_event_free(event) }
            event = nil
            callbacks?.deinitialize(count: 1)
            callbacks?.deallocate()
            callbacks = nil
        }
        if let watcher {
            self.watcher = nil
            watcher.cancel(then: finish)
        } else {
            finish()
        }
    }
}
