import Dispatch
import Foundation

/// Watches one socket for readability (always) and writability (only while libssh holds
/// unsent output), calling `onEvent` on the session's queue.
///
/// It watches its own duplicate of the descriptor and closes it only after both Dispatch
/// sources are cancelled. libssh closes its descriptor whenever the peer goes away; were
/// Dispatch watching that same number, a new connection could get it while the old
/// registration lingers, and that connection would never be woken.
final class SocketWatcher {
    private let read: DispatchSourceRead
    private let write: DispatchSourceWrite
    private var writeArmed = false
    private var writeActivated = false
    private var cancelled = false
    private var pendingCancels = 2
    private var afterCancel: (() -> Void)?

    private let fd: Int32

    /// `fd` becomes this watcher's: it is closed after cancellation.
    init(owning fd: Int32, queue: DispatchQueue, onEvent: @escaping () -> Void) {
        self.fd = fd
        read = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        write = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        read.setEventHandler(handler: onEvent)
        write.setEventHandler(handler: onEvent)
        let done: () -> Void = { [self] in  // strong: the watcher lives until both sources are gone
            pendingCancels -= 1
            if pendingCancels == 0 {
                close(fd)
                afterCancel?()
                afterCancel = nil
            }
        }
        read.setCancelHandler(handler: done)
        write.setCancelHandler(handler: done)
        read.activate()
    }

    /// Arms or disarms the write watch; cheap to call after every pump.
    func wantsWrite(_ wanted: Bool) {
        guard !cancelled, wanted != writeArmed else { return }
        writeArmed = wanted
        if wanted {
            if writeActivated { write.resume() } else { writeActivated = true; write.activate() }
        } else {
            write.suspend()
        }
    }

    func cancel(then body: @escaping () -> Void) {
        guard !cancelled else { return }
        cancelled = true
        afterCancel = body
        read.cancel()
        // A never-activated or suspended source would never run its cancel handler.
        write.cancel()
        if !writeActivated { write.activate() } else if !writeArmed { write.resume() }
    }
}
