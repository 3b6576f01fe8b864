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
    public init(_ uuid: UUID = UUID()) { self.uuid = uuid }
    /// Short serial shown to people: the first 8 hex digits.
    public var short: String { String(uuid.uuidString.lowercased().prefix(8)) }
    public var description: String { uuid.uuidString.lowercased() }
}
