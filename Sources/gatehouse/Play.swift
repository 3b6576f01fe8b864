import ArgumentParser
import Foundation
import GatehouseCore

struct Play: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a session's terminal recording in this terminal.",
        discussion: "The recording is asciicast v2: `gatehouse sessions export ID -o FILE` and `asciinema play FILE` work too.")

    @OptionGroup var options: ConfigOption
    @Argument(help: "Session id or its short serial, or a .cast / .cast.gz file.") var id: String
    @Option(help: "Playback speed (2 = twice as fast, 0.5 = half).") var speed: Double = 1
    @Option(name: .customLong("idle-limit"), help: "Cap pauses at this many seconds.") var idleLimit: Double?

    func run() throws {
        guard speed > 0 else { throw ValidationError("--speed must be positive") }
        let data: Data
        if id.hasSuffix(".cast") || id.hasSuffix(".cast.gz") {
            do { data = try Gzip.readFile(id) } catch { throw fail("\(error)") }
        } else {
            data = try loadRecording(try openAudit(options), id: id)
        }
        let reader: AsciicastReader
        do { reader = try AsciicastReader(data: data) } catch { throw fail("\(error)") }
        var clock = 0.0
        var previous = 0.0
        let out = FileHandle.standardOutput
        for event in reader.events() where event.code == "o" {
            var pause = max(0, event.time - previous)
            if let idleLimit { pause = min(pause, idleLimit) }
            previous = event.time
            clock += pause / speed
            if pause > 0 { usleep(useconds_t(min(pause / speed, 3600) * 1_000_000)) }
            out.write(Data(event.data))
        }
    }
}
