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
    /// The connection's poll context once the relay owns this leg.
    var event: OpaquePointer?
    private var callbacks: UnsafeMutablePointer<ssh_channel_callbacks_struct>?

    /// Exit status or signal the asset reported for the channel.
    enum Exit: Equatable {
        case status(Int32)
        case signal(name: String, coreDumped: Bool, message: String)
    }
    var exit: Exit?

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

    var isConnected: Bool {
        ssh_is_connected(session) != 0 && (ssh_get_status(session) & (SSH_CLOSED | SSH_CLOSED_ERROR)) == 0
    }

    /// Stops watching, closes the channel and the connection; libssh closes the socket only
    /// after Dispatch has let go of it.
    func shutdown() {
        let finish = { [self] in
            if ssh_channel_is_closed(channel) == 0 { ssh_channel_close(channel) }
            ssh_remove_channel_callbacks(channel, callbacks)
            ssh_channel_free(channel)
            if let event { ssh_event_remove_session(event, session) }
            ssh_disconnect(session)
            ssh_free(session)
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
