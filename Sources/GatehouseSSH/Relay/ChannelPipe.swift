import CLibSSH

/// One direction of a relayed channel (user → asset, or asset → user on stdout or stderr),
/// and the whole of the relay's flow control.
///
/// libssh 0.10's `ssh_channel_read` re-opens the source's window to its full size after every
/// read, however much it still holds unread; reading a little at a time for a slow receiver
/// would let the sender pour in a window per read, without bound. So a pipe drains libssh's
/// buffer for the stream completely, and only when its own bytes have all been passed on:
/// at most about two windows (~2.5 MB) are ever held per direction, and a sender facing a
/// slow receiver is held back by the SSH window, end to end.
struct ChannelPipe {
    enum Step: Equatable { case moved(Int), eof, idle }

    let fromStderr: Bool
    let toStderr: Bool
    private var pending: [UInt8] = []
    private var offset = 0

    init(fromStderr: Bool = false, toStderr: Bool = false) {
        self.fromStderr = fromStderr
        self.toStderr = toStderr
    }

    /// Bytes taken from the source and not yet accepted by the destination.
    var held: Int { pending.count - offset }

    /// Moves as much as the destination's window takes. `delivered` sees every byte handed to
    /// the destination, in order, exactly once.
    ///
    /// `transform`, when given, sees each batch taken from the source and returns what is to be
    /// sent in its place (the command rules hold back a forbidden Enter this way).
    mutating func move(from source: OpaquePointer, to destination: OpaquePointer,
                       transform: (([UInt8]) -> [UInt8])? = nil,
                       delivered: (UnsafeRawBufferPointer) -> Void) -> Step {
        var total = 0
        while true {
            if offset < pending.count {
                let window = Int(ssh_channel_window_size(destination))
                guard window > 0 else { break }
                let count = min(window, pending.count - offset)
                let written = pending.withUnsafeBytes { raw -> Int32 in
                    let chunk = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + count)])
                    let w = toStderr ? ssh_channel_write_stderr(destination, chunk.baseAddress, UInt32(count))
                                     : ssh_channel_write(destination, chunk.baseAddress, UInt32(count))
                    if w > 0 { delivered(UnsafeRawBufferPointer(rebasing: chunk[0..<Int(w)])) }
                    return w
                }
                guard written > 0 else { break }
                offset += Int(written)
                total += Int(written)
                if offset == pending.count {
                    pending.removeAll(keepingCapacity: pending.capacity <= 256 * 1024)
                    offset = 0
                }
                continue
            }
            // Nothing held: take everything libssh has for this stream (see above).
            let available = ssh_channel_poll(source, fromStderr ? 1 : 0)
            if available == SSH_EOF || available == SSH_ERROR { return total > 0 ? .moved(total) : .eof }
            guard available > 0 else { break }
            let want = Int(min(available, 8 << 20))
            var got: Int32 = 0
            pending = [UInt8](unsafeUninitializedCapacity: want) { buffer, initialized in
                got = ssh_channel_read_nonblocking(source, buffer.baseAddress, UInt32(want), fromStderr ? 1 : 0)
                initialized = max(0, Int(got))
            }
            offset = 0
            if got == SSH_EOF || got == SSH_ERROR { return total > 0 ? .moved(total) : .eof }
            if got <= 0 { break }
            if let transform {
                pending = transform(pending)
                if pending.isEmpty { total += Int(got) }
            }
        }
        return total > 0 ? .moved(total) : .idle
    }
}

/// Writes as much of `buffer` as `destination`'s window takes, and drops that much from it;
/// true when anything went. For the gateway's own small streams (notices, a joiner's typing,
/// refusals, a watcher's screen), which wait in a buffer rather than in libssh.
func sendWhatFits(_ buffer: inout [UInt8], to destination: OpaquePointer, stderr: Bool = false) -> Bool {
    guard !buffer.isEmpty, case let window = Int(ssh_channel_window_size(destination)), window > 0 else { return false }
    let count = min(window, buffer.count)
    let written = buffer.withUnsafeBytes {
        stderr ? ssh_channel_write_stderr(destination, $0.baseAddress, UInt32(count)) : ssh_channel_write(destination, $0.baseAddress, UInt32(count))
    }
    guard written > 0 else { return false }
    buffer.removeFirst(Int(written))
    return true
}
