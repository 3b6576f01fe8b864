import CZlib
import Foundation

/// gzip files with zlib, for finished recordings (`.cast.gz`, which `zcat` and asciinema's
/// tooling read). Streaming, so a large recording never sits in memory whole.
public enum Gzip {
    public enum Failure: Error, CustomStringConvertible {
        case zlib(String), io(String)
        public var description: String {
            switch self {
            case .zlib(let s): return "compression failed: \(s)"
            case .io(let s): return s
            }
        }
    }

    /// Compresses `source` into `destination` (written to a temporary name, fsynced, renamed).
    /// Level 1 by default: terminal output compresses well even so, at several times the speed.
    public static func compressFile(_ source: String, to destination: String, level: Int32 = 1) throws {
        guard let input = FileHandle(forReadingAtPath: source) else { throw Failure.io("cannot read \(source)") }
        defer { try? input.close() }
        let temporary = destination + ".part"
        guard FileManager.default.createFile(atPath: temporary, contents: nil, attributes: [.posixPermissions: 0o600]),
              let output = FileHandle(forWritingAtPath: temporary) else { throw Failure.io("cannot write \(temporary)") }
        var stream = z_stream()
        guard deflateInit2_(&stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure.zlib("deflateInit2")
        }
        defer { deflateEnd(&stream) }
        var outBuffer = [UInt8](repeating: 0, count: 256 * 1024)
        do {
            while true {
                let chunk = input.readData(ofLength: 1 << 20)
                let flush = chunk.isEmpty ? Z_FINISH : Z_NO_FLUSH
                var rc: Int32 = Z_OK
                try chunk.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
                    stream.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: Bytef.self).baseAddress)
                    stream.avail_in = uInt(raw.count)
                    repeat {
                        try outBuffer.withUnsafeMutableBufferPointer { out in
                            stream.next_out = out.baseAddress
                            stream.avail_out = uInt(out.count)
                            rc = deflate(&stream, flush)
                            guard rc != Z_STREAM_ERROR else { throw Failure.zlib("deflate") }
                            let produced = out.count - Int(stream.avail_out)
                            if produced > 0 { try output.write(contentsOf: Data(out[0..<produced])) }
                        }
                    } while stream.avail_out == 0
                }
                if chunk.isEmpty { break }
            }
            try output.synchronize()
            try output.close()
        } catch {
            try? output.close()
            unlink(temporary)
            throw error is Failure ? error : Failure.io("cannot write \(destination): \(error)")
        }
        guard rename(temporary, destination) == 0 else { throw Failure.io("cannot rename \(temporary)") }
    }

    /// Reads a gzip file (or a plain one: the magic bytes decide) into memory.
    public static func readFile(_ path: String) throws -> Data {
        guard let data = FileManager.default.contents(atPath: path) else { throw Failure.io("cannot read \(path)") }
        guard data.count >= 2, data[data.startIndex] == 0x1f, data[data.startIndex + 1] == 0x8b else { return data }
        return try decompress(data)
    }

    public static func decompress(_ data: Data) throws -> Data {
        var stream = z_stream()
        guard inflateInit2_(&stream, 15 + 32, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw Failure.zlib("inflateInit2")
        }
        defer { inflateEnd(&stream) }
        var result = Data()
        var outBuffer = [UInt8](repeating: 0, count: 256 * 1024)
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: Bytef.self).baseAddress)
            stream.avail_in = uInt(raw.count)
            var rc: Int32 = Z_OK
            repeat {
                try outBuffer.withUnsafeMutableBufferPointer { out in
                    stream.next_out = out.baseAddress
                    stream.avail_out = uInt(out.count)
                    rc = inflate(&stream, Z_NO_FLUSH)
                    guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR else { throw Failure.zlib("inflate: corrupt data") }
                    result.append(contentsOf: out[0..<(out.count - Int(stream.avail_out))])
                }
                if rc == Z_BUF_ERROR && stream.avail_in == 0 { break } // truncated: keep what we have
            } while rc != Z_STREAM_END
        }
        return result
    }
}
