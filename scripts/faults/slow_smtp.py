"""An SMTP server that takes its time: aiosmtpd keeping each message in a Maildir, but
only after DELAY seconds, so that sends are still in flight when the fault suite
injects its faults (a real relay over a real network is slower still).

    python slow_smtp.py HOST PORT MAILDIR DELAY
"""

import asyncio
import signal
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox


class SlowMailbox(Mailbox):
    def __init__(self, maildir: str, delay: float):
        super().__init__(maildir)
        self.delay = delay

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.delay)
        answer = super().handle_DATA(server, session, envelope)
        if asyncio.iscoroutine(answer):
            answer = await answer
        return answer


def main() -> None:
    host, port, maildir, delay = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    controller = Controller(SlowMailbox(maildir, delay), hostname=host, port=port)
    controller.start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    controller.stop()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    main()
