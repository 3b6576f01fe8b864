import Foundation

/// The one vocabulary every protocol uses to report what crossed it. Recorders, the command
/// extractor, the live hub and the store all consume these; a protocol never talks to them
/// any other way.
public enum SessionEvent: Sendable {
    /// Bytes the user's terminal received (stdout and stderr of the asset, and the gateway's own text).
    case output(Data, stream: OutputStream)
    /// Bytes the user typed or piped.
    case input(Data)
    case resize(columns: Int, rows: Int)
    case activity(Activity)

    public enum OutputStream: Sendable { case stdout, stderr }
}

/// Something that happened to a session, in words an auditor reads.
public struct Activity: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case connected, authenticated, authenticationFailed = "authentication_failed"
        case upstreamConnected = "upstream_connected", upstreamFailed = "upstream_failed"
        case channelRefused = "channel_refused", disconnected, terminated
        case recordingGap = "recording_gap", recordingDeleted = "recording_deleted"
        case shared, joined, left, watched
        case fileOperation = "file_operation", transferRefused = "transfer_refused", protocolError = "protocol_error"
        case clipboard
    }

    public var time: Date
    public var kind: Kind
    public var detail: String

    public init(_ kind: Kind, _ detail: String, time: Date = Date()) {
        self.kind = kind
        self.detail = detail
        self.time = time
    }
}

/// Receives a session's events, in order, on the session's queue. Implementations must not
/// block: anything slow belongs behind a bounded queue of its own.
public protocol SessionEventSink: AnyObject, Sendable {
    func session(_ id: SessionID, didEmit event: SessionEvent)
}

public struct SessionID: Hashable, Sendable, CustomStringConvertible {
    public let uuid: UUID
    public init(_ uuid: UUID = SessionID.randomUUID()) { self.uuid = uuid }

    /// A version 4 UUID from the system's random generator (getrandom(2)). Foundation's
    /// `UUID()` reads a file on Linux and, with every descriptor in use, silently returns all
    /// zeros: two sessions would share an id.
    public static func randomUUID() -> UUID {
        var rng = SystemRandomNumberGenerator()
        var bytes = (rng.next() as UInt64, rng.next() as UInt64)
        return withUnsafeMutableBytes(of: &bytes) { raw in
            raw[6] = (raw[6] & 0x0F) | 0x40 // version 4
            raw[8] = (raw[8] & 0x3F) | 0x80 // RFC 4122 variant
            return UUID(uuid: (raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
                               raw[8], raw[9], raw[10], raw[11], raw[12], raw[13], raw[14], raw[15]))
        }
    }
    /// Short serial shown to people: the first 8 hex digits.
    public var short: String { String(uuid.uuidString.lowercased().prefix(8)) }
    public var description: String { uuid.uuidString.lowercased() }
}
