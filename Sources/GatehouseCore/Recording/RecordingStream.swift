import CZlib
import Foundation

/// Reads a recording in chunks, gzipped or not (zlib's gz reader passes plain files through).
/// For a recording still being written, `wholeLinesOnly` stops at the last complete event.
public final class RecordingStream {
    private let file: gzFile
    private let wholeLinesOnly: Bool
    private var carry: [UInt8] = []
    private var done = false

    public init(path: String, compressed: Bool, wholeLinesOnly: Bool) throws {
        guard let file = gzopen(path, "rb") else { throw Gzip.Failure.io("cannot open \(path)") }
        _ = gzbuffer(file, 128 * 1024)
        self.file = file
        self.wholeLinesOnly = wholeLinesOnly
    }

    deinit { gzclose(file) }

    /// The next chunk, or nil at the end.
    public func next(chunkSize: Int = 64 * 1024) throws -> [UInt8]? {
        while !done {
            var buffer = [UInt8](repeating: 0, count: chunkSize)
            let n = buffer.withUnsafeMutableBytes { gzread(file, $0.baseAddress, UInt32(chunkSize)) }
            if n < 0 { throw Gzip.Failure.io("cannot read the recording (corrupt or truncated)") }
            if n == 0 {
                done = true
                let rest = carry
                carry = []
                return wholeLinesOnly || rest.isEmpty ? nil : rest
            }
            buffer.removeSubrange(Int(n)...)
            guard wholeLinesOnly else { return buffer }
            carry += buffer
            guard let lastNewline = carry.lastIndex(of: 0x0A) else { continue }
            let out = Array(carry[...lastNewline])
            carry.removeSubrange(...lastNewline)
            return out
        }
        return nil
    }
}
