/* The pod sandbox's process (the "pause" container): sleep until told to stop.
 * Built with `gcc -static` by tests/node/images.py, so the image needs nothing else. */
#include <signal.h>
#include <unistd.h>

static void stop(int sig) {
	(void)sig;
	_exit(0);
}

int main(void) {
	signal(SIGINT, stop);
	signal(SIGTERM, stop);
	for (;;)
		pause();
}
