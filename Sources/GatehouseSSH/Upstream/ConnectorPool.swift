import Foundation

/// A fixed set of threads for the blocking part of reaching an asset (TCP connect, key
/// exchange, login, opening the channel).
///
/// Not Dispatch's global queues: libdispatch on Linux sizes them to the CPU count and learns
/// only slowly that a worker is blocked on the network, so a burst of logins parked there
/// would starve every session's relay queued behind them.
final class ConnectorPool: @unchecked Sendable {
    static let shared = ConnectorPool(threads: 32)

    private let condition = NSCondition()
    private var jobs: [() -> Void] = []
    private var head = 0

    init(threads: Int) {
        for i in 0..<threads {
            let thread = Thread { [unowned self] in self.work() }
            thread.name = "gatehouse-connector-\(i)"
            thread.stackSize = 1 << 20
            thread.start()
        }
    }

    func submit(_ job: @escaping () -> Void) {
        condition.lock()
        jobs.append(job)
        condition.signal()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while head == jobs.count { condition.wait() }
            let job = jobs[head]
            head += 1
            if head > 1024 && head * 2 > jobs.count {
                jobs.removeFirst(head)
                head = 0
            }
            condition.unlock()
            job()
        }
    }
}
