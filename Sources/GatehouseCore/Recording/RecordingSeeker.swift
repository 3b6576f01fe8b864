import Foundation

/// A piece of a recording a player can start from: the header, a synthetic start that draws the
/// screen as it is at the window's start, then the recording's own event lines.
///
/// Event times are the session's own (absolute), so windows fetched one after another join up:
/// `events` of consecutive windows put together are exactly the recording's lines.
public struct RecordingWindow: Sendable, Equatable {
    /// The recording's header line, with its "\n".
    public var header: [UInt8]
    /// Two event lines at `startTime`: `"r"` with the screen's size, then `"o"` with bytes that
    /// draw the screen (text, cursor, modes; not colours) on a blank terminal of that size.
    public var start: [UInt8]
    /// The recording's own event lines from `startOffset` (verbatim, each with its "\n").
    public var events: [UInt8]
    /// The time of the synthetic start: the time asked for (for `window(fromOffset:)`, the latest
    /// event time before the start).
    public var startTime: Double
    /// Uncompressed offset of the first line in `events`.
    public var startOffset: Int
    /// The screen's size at the start.
    public var columns: Int
    public var rows: Int
    /// Where the next window starts: `window(at: nextTime)` continues exactly after this one
    /// (the window is cut only where that holds), nil once `ended`. Only a pathological recording
    /// (a run of events sharing one timestamp, or one escape sequence, longer than `maxBytes`
    /// plus a keyframe interval) forces a cut elsewhere; `nextOffset` is exact even then.
    public var nextTime: Double?
    /// Uncompressed offset of the line after `events`: `window(fromOffset: nextOffset)` continues
    /// exactly. At the end, the end of the last whole line (of a recording still being written,
    /// where more will follow).
    public var nextOffset: Int
    /// The recording has no more (whole) lines after `events`.
    public var ended: Bool

    /// The window as one asciicast v2 document: header, synthetic start, events.
    public var asciicast: [UInt8] { header + start + events }
}

/// Random access into a recording (`.cast` or `.cast.gz`) for a player: `window(at:maxBytes:)`
/// gives the screen at any time and the events that follow, reading only from the nearest
/// keyframe before that time (`RecordingIndex`, built or loaded at init) and, in a gzip file,
/// from the nearest access point (`Gzip.compressFile`). Memory is bounded by `maxBytes` plus
/// one keyframe interval (`RecordingIndex.Options.keyframeBytes`), whatever the recording's size.
///
/// Immutable after init; windows may be taken from several threads at once.
public final class RecordingSeeker: Sendable {
    public let path: String
    public let index: RecordingIndex
    /// The gzip access points (nil: a plain file, or a gzip file without them, read from its start).
    public let accessPoints: GzipAccessPoints?

    /// Loads `<path>.idx`, or builds it (and writes it, if `persistIndex`). Throws
    /// `RecordingAccessError` for a recording that cannot be read, or is truncated or corrupt.
    public init(path: String, options: RecordingIndex.Options = RecordingIndex.Options(), persistIndex: Bool = true) throws {
        self.path = path
        index = try RecordingIndex.loadOrBuild(recording: path, options: options, persist: persistIndex)
        do {
            accessPoints = try Gzip.accessPoints(ofFile: path)
        } catch {
            throw RecordingAccessError.io(path: path, reason: "\(error)")
        }
    }

    public var duration: Double { index.duration }
    public var markers: [RecordingIndex.Marker] { index.markers }

    /// The screen at `time` and the events from there, about `maxBytes` of them.
    ///
    /// The window starts at the first event at or after `time` (a negative time is 0): its
    /// synthetic start draws the screen left by every event before it. Should that event fall
    /// inside an escape sequence split across events, the start moves on to the next event
    /// between sequences, so that a terminal shown the synthetic start reads the events that
    /// follow as the original terminal did. Past the end: no events, `ended`.
    public func window(at time: Double, maxBytes: Int) throws -> RecordingWindow {
        guard !time.isNaN else { throw RecordingAccessError.badPosition("time is not a number") }
        let time = max(0, time)
        return try window(from: index.keyframe(before: time), start: .time(time), maxBytes: maxBytes)
    }

    /// The window starting exactly at the line at uncompressed offset `offset` (a `nextOffset`).
    public func window(fromOffset offset: Int, maxBytes: Int) throws -> RecordingWindow {
        guard offset >= index.keyframes[0].offset else {
            throw RecordingAccessError.badPosition("offset \(offset) is inside the header")
        }
        return try window(from: index.keyframe(atOrBefore: offset), start: .offset(offset), maxBytes: maxBytes)
    }

    private enum Start {
        case time(Double)
        case offset(Int)
    }

    private func window(from keyframe: RecordingIndex.Keyframe, start: Start, maxBytes: Int) throws -> RecordingWindow {
        var screen = TerminalScreen(columns: keyframe.columns, rows: keyframe.rows)
        do {
            screen.feed(try keyframe.snapshot())
        } catch {
            throw RecordingAccessError.corrupt(path: RecordingIndex.path(forRecording: path),
                                               reason: "a keyframe's snapshot is damaged; delete the index to rebuild it")
        }
        var latest = keyframe.time
        let reader = try RecordingByteReader(path: path, offset: keyframe.offset, accessPoints: .known(accessPoints))
        var lines = RecordingLineReader(reader)
        /// The end of the last line replayed or taken.
        var position = keyframe.offset

        func nextLine() throws -> (RecordingLineReader.Line, AsciicastEvent?)? {
            guard let line = try lines.next(), line.terminated else { return nil }
            return (line, try RecordingIndex.parseEvent(line, path: path))
        }

        // Replay up to the start.
        var first: (RecordingLineReader.Line, AsciicastEvent?)?
        var reached = false
        while let (line, event) = try nextLine() {
            switch start {
            case .time(let time):
                if let event, event.time >= time { reached = true }
                if reached, event != nil, screen.isBetweenSequences { first = (line, event) }
            case .offset(let offset):
                if line.offset == offset { first = (line, event) }
                if line.offset > offset {
                    throw RecordingAccessError.badPosition("offset \(offset) is not the start of a line")
                }
            }
            if first != nil { break }
            if let event {
                screen.apply(event)
                latest = max(latest, event.time)
            }
            position = line.end
        }
        if first == nil, case .offset(let offset) = start, offset != position {
            throw RecordingAccessError.badPosition("offset \(offset) is past the end (\(position))")
        }

        let startTime: Double
        switch start {
        case .time(let time): startTime = time
        case .offset: startTime = latest
        }
        var synthetic: [UInt8] = []
        var encoder = AsciicastEncoder()
        encoder.resize(columns: screen.columns, rows: screen.rows, at: startTime, to: &synthetic)
        RecordingIndex.snapshot(of: screen).withUnsafeBytes { encoder.output($0, at: startTime, to: &synthetic) }
        encoder.finish(at: startTime, to: &synthetic)
        let (columns, rows) = (screen.columns, screen.rows)
        let startOffset = first?.0.offset ?? position

        // The events, up to a cut after `maxBytes` where `window(at: nextTime)` starts again:
        // between escape sequences, before an event later than every one before it.
        let limit = max(1, maxBytes)
        let hardLimit = limit + max(index.options.keyframeBytes, 1 << 20)
        var events: [UInt8] = []
        var next: (time: Double, offset: Int)?
        var current = first
        while let (line, event) = current {
            if events.count >= limit, let event,
               (screen.isBetweenSequences && event.time > latest) || events.count >= hardLimit {
                next = (event.time, line.offset)
                break
            }
            events += line.bytes
            events.append(0x0A)
            if let event {
                screen.apply(event)
                latest = max(latest, event.time)
            }
            position = line.end
            current = try nextLine()
        }
        return RecordingWindow(header: index.header + [0x0A], start: synthetic, events: events, startTime: startTime,
                               startOffset: startOffset, columns: columns, rows: rows, nextTime: next?.time,
                               nextOffset: next?.offset ?? position, ended: next == nil)
    }
}
