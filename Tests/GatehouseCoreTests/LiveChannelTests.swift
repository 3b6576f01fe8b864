import Dispatch
import Foundation
import XCTest
@testable import GatehouseCore

/// Counts wake calls; each one also signals a semaphore a test can wait on.
private final class WakeCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    let semaphore = DispatchSemaphore(value: 0)

    var wake: @Sendable () -> Void {
        { [self] in
            lock.withLock { n += 1 }
            semaphore.signal()
        }
    }

    var count: Int { lock.withLock { n } }

    /// A generous bound: the session queue has nothing else to do.
    func waitForWake(file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(semaphore.wait(timeout: .now() + 5), .success, "no wake", file: file, line: line)
    }
}

/// Things recorded from closures called on other threads.
private final class Recorder<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var items: [T] = []
    func add(_ item: T) { lock.withLock { items.append(item) } }
    var all: [T] { lock.withLock { items } }
}

private extension LiveChannel {
    /// As the session does: raw bytes from its buffer.
    func out(_ text: String) { out(Array(text.utf8)) }
    func out(_ bytes: [UInt8]) { bytes.withUnsafeBytes { output($0) } }
}

private extension LiveChannel.Read {
    /// The events without their times, or nil for `.nothing` / `.ended`.
    var events: [LiveChannel.Event]? {
        if case .events(let stamped) = self { return stamped.map(\.event) }
        return nil
    }
}

private func output(_ text: String) -> LiveChannel.Event { .output(Array(text.utf8)) }

final class LiveChannelTests: XCTestCase {
    let screenBytes = Array("\u{1b}[H\u{1b}[2Jowner's screen".utf8)
    var queue: DispatchQueue!
    let onSessionQueue = DispatchSpecificKey<Bool>()

    override func setUp() {
        queue = DispatchQueue(label: "test.session")
        queue.setSpecific(key: onSessionQueue, value: true)
    }

    /// `screenReuse` is off unless a test asks: most tests follow one watcher's screen requests.
    func channel(columns: Int = 80, rows: Int = 24, options: LiveChannel.Options = .init(), screenReuse: TimeInterval = 0,
                 screen: (@Sendable () -> [UInt8])? = nil,
                 type: @escaping ([UInt8], String) -> Void = { _, _ in },
                 announce: @escaping (String) -> Void = { _ in }) -> LiveChannel {
        let bytes = screenBytes
        var options = options
        options.screenReuse = screenReuse
        return LiveChannel(sessionID: "s1", owner: "alice", asset: "web01", started: Date(), columns: columns, rows: rows,
                           sessionQueue: queue, options: options, screen: screen ?? { bytes },
                           hooks: .init(type: type, announce: announce))
    }

    /// The first reads of a new watcher: `.nothing`, a wake once the session queue took the
    /// screen, then the screen itself.
    private func readScreen(_ watcher: LiveWatcher, _ wakes: WakeCounter, file: StaticString = #filePath, line: UInt = #line) -> LiveChannel.Event? {
        XCTAssertEqual(watcher.read(), .nothing, "a screen is taken on the session queue, not on the reader's thread", file: file, line: line)
        wakes.waitForWake(file: file, line: line)
        let events = watcher.read().events
        XCTAssertEqual(events?.count, 1, file: file, line: line)
        return events?.first
    }

    // MARK: Attaching

    func testNewWatcherReadsScreenAtOwnersSizeThenLaterOutputInOrder() {
        let live = channel(columns: 80, rows: 24)
        queue.sync { live.resize(columns: 132, rows: 40) } // before anyone watches: the size still counts
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        XCTAssertEqual(w.read(), .nothing)
        wakes.waitForWake()
        XCTAssertEqual(wakes.count, 1)
        XCTAssertEqual(w.read().events, [.screen(screenBytes, columns: 132, rows: 40)])
        queue.sync {
            live.out("one")
            live.out("two")
            live.resize(columns: 100, rows: 30)
            live.out("three")
        }
        XCTAssertEqual(w.read().events, [output("one"), output("two"), .resize(columns: 100, rows: 30), output("three")])
        XCTAssertEqual(w.read(), .nothing, "nothing is delivered twice")
        queue.sync { live.out("four") }
        XCTAssertEqual(w.read().events, [output("four")])
        XCTAssertEqual(w.skips, 1, "the first screen counts once")
        XCTAssertEqual(live.currentSize.columns, 100)
        XCTAssertEqual(live.currentSize.rows, 30)
    }

    func testOutputBeforeTheScreenIsTakenIsInTheScreenNotRepeatedAfterIt() {
        // The screen is whatever the owner's terminal shows when the session queue gets to it;
        // output appended before that must not come again after the screen.
        let terminal = Recorder<UInt8>() // only touched on the session queue
        let live = channel(screen: { terminal.all })
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        queue.sync { for b in "early".utf8 { terminal.add(b) }; live.out("early") }
        XCTAssertEqual(w.read(), .nothing)
        queue.sync { for b in "late".utf8 { terminal.add(b) }; live.out("late") } // queued after the screen request
        wakes.waitForWake()
        XCTAssertEqual(w.read().events, [.screen(Array("early".utf8), columns: 80, rows: 24)])
        XCTAssertEqual(w.read().events, [output("late")])
        XCTAssertEqual(w.read(), .nothing)
    }

    func testUnwatchedSessionKeepsNoOutput() {
        let live = channel()
        XCTAssertFalse(live.isWatched)
        queue.sync { live.out("before anyone watched") }
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        XCTAssertTrue(live.isWatched)
        XCTAssertEqual(readScreen(w, wakes), .screen(screenBytes, columns: 80, rows: 24))
        queue.sync { live.out("after") }
        XCTAssertEqual(w.read().events, [output("after")], "only the screen and later output")
        w.detach()
        XCTAssertFalse(live.isWatched)
        XCTAssertEqual(live.watcherNames, [])
        // White-box probe: the detached cursor still points into the log; output while nobody
        // watches must not have been added to it.
        queue.sync { live.out("unwatched again") }
        XCTAssertFalse(w.read().events?.contains(output("unwatched again")) ?? false)
    }

    func testReadLimitSplitsButLosesNothing() {
        let live = channel()
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        _ = readScreen(w, wakes)
        let chunks = (0..<10).map { String(repeating: Character(String($0)), count: 10) }
        queue.sync { chunks.forEach { live.out($0) } }
        var got: [LiveChannel.Event] = []
        while case .events(let e) = w.read(limit: 25) {
            XCTAssertLessThanOrEqual(e.count, 3, "about `limit` bytes per read")
            got += e.map(\.event)
        }
        XCTAssertEqual(got, chunks.map(output))
    }

    // MARK: Falling behind

    func testWatcherBeyondTheWindowIsSkippedAheadToAFreshScreen() {
        var options = LiveChannel.Options()
        options.window = 100
        let live = channel(options: options)
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        _ = readScreen(w, wakes)
        let chunk = { (i: Int) in String(format: "chunk-%04d", i) } // 10 bytes each

        // Exactly a window behind: everything is still there.
        queue.sync { (0..<10).forEach { live.out(chunk($0)) } }
        XCTAssertEqual(w.read().events, (0..<10).map { output(chunk($0)) })
        XCTAssertEqual(w.skips, 1)

        // More than a window behind: the oldest unread output is gone, so a fresh screen.
        queue.sync { (10..<25).forEach { live.out(chunk($0)) } }
        XCTAssertEqual(w.read(), .nothing)
        wakes.waitForWake()
        XCTAssertEqual(w.read().events, [.screen(screenBytes, columns: 80, rows: 24)])
        XCTAssertEqual(w.read(), .nothing, "output before the screen is not replayed after it")
        queue.sync { live.out("newer") }
        XCTAssertEqual(w.read().events, [output("newer")])
        XCTAssertEqual(w.skips, 2)
    }

    func testLogIsBoundedByTheWindowWhateverTheNumberOfWatchers() {
        var options = LiveChannel.Options()
        options.window = 100
        let live = channel(options: options)
        let idle = (0..<20).map { i -> (LiveWatcher, WakeCounter) in
            let wakes = WakeCounter()
            return (live.attach(name: "idle\(i)", wake: wakes.wake), wakes)
        }
        for (w, wakes) in idle { _ = readScreen(w, wakes) }
        let keen = WakeCounter()
        let reader = live.attach(name: "keen", wake: keen.wake)
        _ = readScreen(reader, keen)

        var readByKeen: [LiveChannel.Event] = []
        for i in 0..<50 {
            queue.sync { live.out(String(format: "chunk-%04d", i)) }
            readByKeen += reader.read().events ?? []
        }
        XCTAssertEqual(readByKeen, (0..<50).map { output(String(format: "chunk-%04d", $0)) }, "a watcher that keeps up loses nothing")
        XCTAssertEqual(reader.skips, 1)
        // 500 bytes went by; none of the idle watchers (20 cursors at the start) kept them in memory.
        for (w, wakes) in idle {
            XCTAssertEqual(w.read(), .nothing, "\(w.name) must be skipped ahead, not replayed 500 bytes")
            wakes.waitForWake()
            XCTAssertEqual(w.read().events, [.screen(screenBytes, columns: 80, rows: 24)])
            XCTAssertEqual(w.skips, 2)
        }
        XCTAssertEqual(live.watcherNames.count, 21, "skipping is not cutting loose")
    }

    func testStalledWatcherIsCutLooseButOneThatKeepsReadingIsNot() {
        var options = LiveChannel.Options()
        options.window = 100
        options.stallLimit = 0.1
        let live = channel(options: options)
        let cut = Recorder<(String, String)>()
        let stalledWakes = WakeCounter(), readerWakes = WakeCounter()
        let stalled = live.attach(name: "stalled", wake: stalledWakes.wake, cutLoose: { cut.add(("stalled", $0)) })
        let reader = live.attach(name: "reader", wake: readerWakes.wake, cutLoose: { cut.add(("reader", $0)) })
        _ = readScreen(stalled, stalledWakes)
        _ = readScreen(reader, readerWakes)

        // Both go quiet for longer than the limit (a one-way wait: longer only makes it surer).
        Thread.sleep(forTimeInterval: 0.25)
        // Quiet but not behind: kept.
        queue.sync { live.out("0123456789") }
        XCTAssertEqual(live.watcherNames, ["reader", "stalled"])
        XCTAssertTrue(cut.all.isEmpty)

        // One reads, then the session outruns both: only the quiet one is behind *and* stalled.
        XCTAssertEqual(reader.read().events, [output("0123456789")])
        queue.sync { (0..<20).forEach { live.out(String(format: "chunk-%04d", $0)) } }
        XCTAssertEqual(live.watcherNames, ["reader"])
        XCTAssertEqual(cut.all.map(\.0), ["stalled"])
        XCTAssertFalse(cut.all.first?.1.isEmpty ?? true, "the watcher is told why")
        XCTAssertTrue(live.isWatched)

        // The reader is behind too, but only skipped ahead.
        XCTAssertEqual(reader.read(), .nothing)
        readerWakes.waitForWake()
        XCTAssertEqual(reader.read().events, [.screen(screenBytes, columns: 80, rows: 24)])
        queue.sync { live.out("more") }
        XCTAssertEqual(reader.read().events, [output("more")])
        XCTAssertEqual(cut.all.count, 1)
    }

    /// A watcher waiting for news (its last read returned `.nothing`) cannot read during a quiet
    /// spell: there is nothing to read. When a burst bigger than the window then arrives in
    /// one go, it has been woken but has had no chance to read yet: it is behind, so it should
    /// be skipped ahead, not cut loose as stalled (`end` already spares waiting watchers).
    func testWatcherWaitingThroughAQuietSpellIsSkippedNotCutLoose() {
        var options = LiveChannel.Options()
        options.window = 100
        options.stallLimit = 0.1
        let live = channel(options: options)
        let cut = Recorder<String>()
        let wakes = WakeCounter()
        let w = live.attach(name: "patient", wake: wakes.wake, cutLoose: { cut.add($0) })
        _ = readScreen(w, wakes)
        XCTAssertEqual(w.read(), .nothing) // waiting, as a watcher does
        Thread.sleep(forTimeInterval: 0.2) // the owner reads a man page: nothing happens
        queue.sync { (0..<20).forEach { live.out(String(format: "chunk-%04d", $0)) } } // then `cat big.log`
        XCTAssertEqual(wakes.count, 2, "woken by the first chunk")
        wakes.waitForWake() // that wake's signal
        XCTAssertEqual(cut.all, [], "a waiting watcher was cut loose as if it had stalled")
        XCTAssertEqual(live.watcherNames, ["patient"])
        guard cut.all.isEmpty else { return }
        XCTAssertEqual(w.read(), .nothing, "more than a window behind")
        wakes.waitForWake()
        XCTAssertEqual(w.read().events, [.screen(screenBytes, columns: 80, rows: 24)])
    }

    // MARK: Ending

    func testEndWakesWaitingWatchersWhoReadWhatIsLeftThenTheReason() {
        let live = channel()
        let aWakes = WakeCounter(), bWakes = WakeCounter()
        let a = live.attach(name: "a", wake: aWakes.wake)
        let b = live.attach(name: "b", wake: bWakes.wake)
        _ = readScreen(a, aWakes)
        _ = readScreen(b, bWakes)
        XCTAssertEqual(a.read(), .nothing)
        XCTAssertEqual(b.read(), .nothing)
        queue.sync { live.end("owner logged out") } // a: nothing left to read
        XCTAssertEqual(aWakes.count, 2, "end wakes a waiting watcher")
        XCTAssertEqual(a.read(), .ended("owner logged out"))
        XCTAssertEqual(a.read(), .ended("owner logged out"))

        let live2 = channel()
        let cWakes = WakeCounter()
        let c = live2.attach(name: "c", wake: cWakes.wake)
        _ = readScreen(c, cWakes)
        XCTAssertEqual(c.read(), .nothing)
        queue.sync {
            live2.out("last words")
            live2.end("terminated by admin")
            live2.end("a second reason is ignored")
        }
        XCTAssertEqual(cWakes.count, 2)
        XCTAssertEqual(c.read().events, [output("last words")])
        XCTAssertEqual(c.read(), .ended("terminated by admin"))
    }

    func testEndWakesAWatcherWaitingForItsScreen() {
        let live = channel()
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        queue.suspend() // the screen request cannot run yet
        XCTAssertEqual(w.read(), .nothing)
        live.end("gone")
        XCTAssertEqual(wakes.count, 1)
        queue.resume()
        queue.sync {}
        var read = w.read()
        if case .events(let e) = read { // the screen may still come first
            XCTAssertEqual(e.map(\.event), [.screen(screenBytes, columns: 80, rows: 24)])
            read = w.read()
        }
        XCTAssertEqual(read, .ended("gone"))
    }

    func testEndLetsGoOfWatchersThatStoppedReadingButWakesThoseWaiting() {
        var options = LiveChannel.Options()
        options.stallLimit = 0.1
        let live = channel(options: options)
        let cut = Recorder<(String, String)>()
        let idleWakes = WakeCounter(), waitingWakes = WakeCounter(), freshWakes = WakeCounter()
        let idle = live.attach(name: "idle", wake: idleWakes.wake, cutLoose: { cut.add(("idle", $0)) })
        let waiting = live.attach(name: "waiting", wake: waitingWakes.wake, cutLoose: { cut.add(("waiting", $0)) })
        _ = readScreen(idle, idleWakes)
        _ = readScreen(waiting, waitingWakes)
        XCTAssertEqual(waiting.read(), .nothing) // waits for news: it will read the end
        Thread.sleep(forTimeInterval: 0.2) // one-way: longer than the limit
        let fresh = live.attach(name: "fresh", wake: freshWakes.wake, cutLoose: { cut.add(("fresh", $0)) })
        _ = readScreen(fresh, freshWakes)

        queue.sync { live.end("owner left") }
        XCTAssertEqual(cut.all.map(\.0), ["idle"], "only the one neither reading nor waiting is let go")
        XCTAssertEqual(live.watcherNames, ["fresh", "waiting"])
        XCTAssertEqual(waitingWakes.count, 2)
        XCTAssertEqual(waiting.read(), .ended("owner left"))
        XCTAssertEqual(fresh.read(), .ended("owner left"))
    }

    func testTrafficCountsBothWaysWatchedOrNot() {
        let live = channel()
        queue.sync {
            live.out("12345")
            live.input(count: 3)
        }
        let w = live.attach(name: "carol", wake: {})
        queue.sync {
            live.out("678")
            live.input(count: 2)
        }
        XCTAssertEqual(live.traffic.in, 5)
        XCTAssertEqual(live.traffic.out, 8)
        withExtendedLifetime(w) {}
    }

    func testWatcherAttachingAfterTheEndReadsTheReason() {
        let live = channel()
        queue.sync { live.end("finished") }
        let w = live.attach(name: "late", wake: {})
        XCTAssertEqual(w.read(), .ended("finished"))
    }

    // MARK: Joiners

    func testTypingReachesTheSessionOnlyFromWriteModeJoiners() {
        let typed = Recorder<([UInt8], String, Bool)>()
        let key = onSessionQueue
        let live = channel(type: { bytes, who in typed.add((bytes, who, DispatchQueue.getSpecific(key: key) == true)) })
        let reader = live.attach(name: "viewer", wake: {})
        let writer = live.attach(name: "pair", canWrite: true, wake: {})
        XCTAssertFalse(reader.canWrite)
        XCTAssertTrue(writer.canWrite)
        reader.type(Array("rm -rf /\r".utf8))
        writer.type(Array("ls\r".utf8))
        writer.type([])
        queue.sync {}
        XCTAssertEqual(typed.all.map(\.0), [Array("ls\r".utf8)], "read-only input is dropped, empty input too")
        XCTAssertEqual(typed.all.map(\.1), ["pair"])
        XCTAssertEqual(typed.all.map(\.2), [true], "hooks run on the session queue")
    }

    func testAnnounceTellsTheOwnerAndEveryWatcher() {
        let told = Recorder<(String, Bool)>()
        let key = onSessionQueue
        let live = channel(announce: { told.add(($0, DispatchQueue.getSpecific(key: key) == true)) })
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        _ = readScreen(w, wakes)
        XCTAssertEqual(w.read(), .nothing)
        live.announce("bob joined (read-only)")
        queue.sync {}
        XCTAssertEqual(told.all.map(\.0), ["bob joined (read-only)"])
        XCTAssertEqual(told.all.map(\.1), [true])
        XCTAssertEqual(wakes.count, 2, "a notice is news")
        XCTAssertEqual(w.read().events, [.notice("bob joined (read-only)")])
    }

    // MARK: Waking

    func testWakeFiresOnlyForNewsAfterAnEmptyRead() {
        let live = channel()
        let wakes = WakeCounter()
        let w = live.attach(name: "carol", wake: wakes.wake)
        _ = readScreen(w, wakes)
        XCTAssertEqual(wakes.count, 1)

        // Not waiting (the last read returned events): no wake, however much arrives.
        queue.sync { live.out("a") }
        XCTAssertEqual(wakes.count, 1)
        XCTAssertEqual(w.read().events, [output("a")])
        queue.sync { live.out("b") }
        XCTAssertEqual(wakes.count, 1)
        XCTAssertEqual(w.read().events, [output("b")])

        // Waiting: one wake for a burst, not one per append.
        XCTAssertEqual(w.read(), .nothing)
        XCTAssertEqual(wakes.count, 1, "no wake without news")
        queue.sync { live.out("c"); live.out("d"); live.resize(columns: 90, rows: 20) }
        XCTAssertEqual(wakes.count, 2)
        XCTAssertEqual(w.read().events, [output("c"), output("d"), .resize(columns: 90, rows: 20)])

        // Each empty read arms exactly one wake.
        XCTAssertEqual(w.read(), .nothing)
        XCTAssertEqual(w.read(), .nothing)
        queue.sync { live.out("e"); live.out("f") }
        XCTAssertEqual(wakes.count, 3)
        XCTAssertEqual(w.read().events, [output("e"), output("f")])
        queue.sync { live.end("bye") }
        XCTAssertEqual(wakes.count, 3, "end wakes only waiting watchers")
        XCTAssertEqual(w.read(), .ended("bye"))
    }

    // MARK: Under load

    /// A reader on its own thread, the session appending on its queue: whatever the
    /// interleaving (and however often a small window skips it ahead), the last screen plus the
    /// output after it is exactly what the owner's terminal got, once the reader has caught up.
    func testConcurrentReaderReconstructsTheOwnersOutputExactly() {
        var rng = SystemRandomNumberGenerator()
        let chunks = (0..<2000).map { i in (0..<Int.random(in: 1...40, using: &rng)).map { UInt8(truncatingIfNeeded: i &* 7 &+ $0) } }
        let all = chunks.flatMap { $0 }
        for window in [1 << 20, 2048] {
            var options = LiveChannel.Options()
            options.window = window
            let terminal = Recorder<[UInt8]>() // what the owner's terminal got; session queue only
            let live = channel(options: options, screen: { terminal.all.flatMap { $0 } })
            let wakes = WakeCounter()
            let w = live.attach(name: "carol", wake: wakes.wake)
            let result = Recorder<[UInt8]>()
            let unexpected = Recorder<String>()
            let done = DispatchSemaphore(value: 0)
            let total = all.count
            Thread.detachNewThread {
                var seen: [UInt8] = []
                var sawScreen = false
                loop: while !(sawScreen && seen.count >= total) {
                    switch w.read(limit: 300) {
                    case .nothing:
                        guard wakes.semaphore.wait(timeout: .now() + 5) == .success else { unexpected.add("no wake"); break loop }
                    case .ended(let reason):
                        unexpected.add("ended: \(reason)")
                        break loop
                    case .events(let events):
                        for e in events.map(\.event) {
                            switch e {
                            case .screen(let bytes, _, _): seen = bytes; sawScreen = true
                            case .output(let bytes): seen += bytes
                            default: unexpected.add("\(e)")
                            }
                        }
                    }
                }
                result.add(seen)
                done.signal()
            }
            for chunk in chunks {
                queue.async { terminal.add(chunk); live.out(chunk) }
            }
            XCTAssertEqual(done.wait(timeout: .now() + 10), .success, "window \(window)")
            XCTAssertEqual(unexpected.all, [], "window \(window)")
            XCTAssertEqual(result.all.first?.count, all.count, "window \(window)")
            XCTAssertTrue(result.all.first == all, "window \(window): bytes lost, duplicated or reordered")
            queue.sync { live.end("done") }
            XCTAssertEqual(w.read(), .ended("done"))
        }
    }

    func testAWatcherFarBehindTheSessionGetsTheScreenNotTheBacklog() {
        var options = LiveChannel.Options()
        options.catchUp = 1000
        let taken = Recorder<Int>()
        let live = channel(options: options, screen: { taken.add(1); return Array("screen".utf8) })
        let wakes = WakeCounter()
        let w = live.attach(name: "w", wake: wakes.wake)
        _ = readScreen(w, wakes)
        queue.sync { live.out(String(repeating: "x", count: 600)) }
        XCTAssertEqual(w.read().events, [output(String(repeating: "x", count: 600))], "a little behind: the bytes")
        queue.sync { for _ in 0..<5 { live.out(String(repeating: "y", count: 600)) } }
        XCTAssertEqual(w.read(), .nothing, "3000 bytes behind: a screen is on its way instead")
        wakes.waitForWake()
        XCTAssertEqual(w.read().events, [.screen(Array("screen".utf8), columns: 80, rows: 24)])
        queue.sync { live.out("after") }
        XCTAssertEqual(w.read().events, [output("after")])
        XCTAssertEqual(taken.all.count, 2)
    }

    func testWatchersSkippedAheadTogetherShareOneScreen() {
        var options = LiveChannel.Options()
        options.window = 100
        let taken = Recorder<Int>()
        let live = channel(options: options, screenReuse: 10, screen: { taken.add(1); return Array("screen".utf8) })
        let first = WakeCounter(), second = WakeCounter()
        let a = live.attach(name: "a", wake: first.wake), b = live.attach(name: "b", wake: second.wake)
        _ = readScreen(a, first)
        XCTAssertEqual(b.read().events, [.screen(Array("screen".utf8), columns: 80, rows: 24)], "the recent screen, at once")
        queue.sync { live.out("next") }
        XCTAssertEqual(a.read().events, [output("next")])
        XCTAssertEqual(b.read().events, [output("next")], "both continue from the same point")
        XCTAssertEqual(taken.all.count, 1, "one screen for both")
    }
}
