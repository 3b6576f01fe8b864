import Foundation

/// Splits bytes into records as they arrive: for a file read in chunks, or live messages.
///
/// `append` more bytes, then call `next` until it returns nil (needs more). Unknown types are
/// skipped; a length over `DesktopRecordType.maxPayload` throws (corruption, not a torn tail).
public struct DesktopRecordParser: Sendable {
    /// Received bytes; those before `position` are parsed already (dropped on the next append,
    /// so that parsing many small records does not copy the rest of the buffer each time).
    private var buffer = Data()
    private var position = 0
    /// Bytes dropped from the front of `buffer`, for error offsets.
    private var dropped = 0
    private var header: DesktopHeader?
    /// Longest header line accepted.
    static let maxHeaderLine = 64 * 1024

    public init() {}

    /// Starts after the header, e.g. for live messages once the header arrived separately.
    public init(header: DesktopHeader) { self.header = header }

    public mutating func append(_ bytes: Data) {
        if position > 0 {
            buffer = position < buffer.count ? buffer.subdata(in: position..<buffer.count) : Data()
            dropped += position
            position = 0
        }
        buffer.append(bytes)
    }

    /// Bytes received but not yet parsed (a partial record).
    public var pendingBytes: Int { buffer.count - position }

    /// The header, once its line is complete; throws when it is not a desktop recording.
    public mutating func readHeader() throws -> DesktopHeader? {
        if let header { return header }
        guard let newline = buffer[position...].firstIndex(of: UInt8(ascii: "\n")) else {
            if pendingBytes > Self.maxHeaderLine { throw DesktopRecordingError.badHeader("no header line") }
            return nil
        }
        let parsed = try DesktopHeader.parse(buffer.subdata(in: position..<newline))
        position = newline + 1
        header = parsed
        return parsed
    }

    /// The next known record, or nil when more bytes are needed.
    public mutating func next() throws -> DesktopTimedRecord? {
        guard try readHeader() != nil else { return nil }
        while pendingBytes >= DesktopRecordType.headerSize {
            let at = position
            let rawType = buffer[at]
            let length = Int(buffer.readLE32(at: at + 1))
            guard length <= DesktopRecordType.maxPayload else {
                throw DesktopRecordingError.recordTooLarge(type: rawType, length: length, offset: dropped + at)
            }
            guard pendingBytes >= DesktopRecordType.headerSize + length else { return nil }
            let time = Int(buffer.readLE32(at: at + 5))
            let payloadStart = at + DesktopRecordType.headerSize
            let end = payloadStart + length
            position = end
            guard let type = DesktopRecordType(rawValue: rawType) else { continue } // unknown: skipped
            do {
                let record = try DesktopRecord.decode(type: type, payload: buffer.subdata(in: payloadStart..<end))
                return DesktopTimedRecord(time: time, record: record)
            } catch DesktopRecordingError.malformed(let why) {
                throw DesktopRecordingError.malformed("\(why) at byte \(dropped + at)")
            }
        }
        return nil
    }
}

/// Reads a `.gdr` file (or bytes in memory) record by record, never the whole file at once.
///
/// The header is read by `init`. `next()` returns records in order and nil at the end; a torn
/// last record (a gateway stopped mid-write) ends the recording quietly (`tornTailBytes` says
/// how much was left over).
public final class DesktopRecordingReader {
    public let header: DesktopHeader
    private var parser: DesktopRecordParser
    private var source: Source
    private static let chunkSize = 1 << 20

    private enum Source {
        case file(FileHandle)
        case memory
        case done
    }

    public convenience init(path: String) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw DesktopRecordingError.io("cannot read \(path): \(String(cString: strerror(errno)))")
        }
        try self.init(source: .file(handle), initial: Data())
    }

    public convenience init(data: Data) throws {
        try self.init(source: .memory, initial: data)
    }

    private init(source: Source, initial: Data) throws {
        var source = source
        var parser = DesktopRecordParser()
        parser.append(initial)
        var found = try parser.readHeader()
        while found == nil {
            guard try Self.fill(&parser, from: &source) else {
                if case .file(let handle) = source { try? handle.close() }
                throw DesktopRecordingError.badHeader(parser.pendingBytes == 0 ? "the file is empty" : "no complete header line")
            }
            found = try parser.readHeader()
        }
        self.header = found ?? DesktopHeader(width: 0, height: 0, timestamp: 0, title: "") // found is set here
        self.parser = parser
        self.source = source
    }

    deinit {
        if case .file(let handle) = source { try? handle.close() }
    }

    /// Bytes after the last whole record, once `next` has returned nil.
    public var tornTailBytes: Int { parser.pendingBytes }

    public func next() throws -> DesktopTimedRecord? {
        while true {
            if let record = try parser.next() { return record }
            guard try fill() else { return nil }
        }
    }

    /// Reads every remaining record.
    public func readAll() throws -> [DesktopTimedRecord] {
        var records: [DesktopTimedRecord] = []
        while let r = try next() { records.append(r) }
        return records
    }

    private func fill() throws -> Bool { try Self.fill(&parser, from: &source) }

    /// Appends the next chunk of the source; false at its end.
    private static func fill(_ parser: inout DesktopRecordParser, from source: inout Source) throws -> Bool {
        guard case .file(let handle) = source else { return false }
        let chunk: Data
        do {
            chunk = try handle.read(upToCount: chunkSize) ?? Data()
        } catch {
            throw DesktopRecordingError.io("cannot read the recording: \(error)")
        }
        if chunk.isEmpty {
            try? handle.close()
            source = .done
            return false
        }
        parser.append(chunk)
        return true
    }
}
