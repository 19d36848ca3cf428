/*
 * ftvm-counter: a tiny TCP counter server, the guest workload of ftvm's
 * fault-tolerance tests.
 *
 * Usage: ftvm-counter [PORT]        (default port 7777)
 *
 * Protocol. A client sends request lines: any bytes ending in '\n' (the
 * content is ignored; an empty line is a request too). For every request the
 * server adds one to a counter and replies with its new value as a decimal
 * line, "N\n". The counter is global: it starts at 0 when the server starts
 * (so the first reply ever is "1\n") and it is shared by every connection,
 * past and present. Replies to one connection come in the order of its
 * requests. Bytes after the last '\n' when a client closes are not a request.
 * A client may pipeline requests; the server stops reading from a client that
 * has many unanswered requests until it reads its replies (back pressure).
 *
 * Every change of the counter is therefore visible to clients as a strictly
 * increasing sequence: after a failover a client can check that the replies
 * it gets continue exactly where they stopped (previous + 1).
 *
 * The server is one thread with poll(2) over nonblocking sockets: it serves
 * up to MAX_CLIENTS connections at a time (more wait in the listen backlog)
 * and keeps running when clients come and go. Reads and writes may be
 * partial; EINTR and EAGAIN are retried. It prints
 *
 *   ftvm-counter: listening on port PORT
 *
 * on stdout once it accepts connections, and a line per connection opened or
 * closed. It runs until killed.
 *
 * Build (static, for the riscv64 guest):
 *   riscv64-linux-gnu-gcc -static -O2 -o ftvm-counter counter.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_CLIENTS 16
/* Stop reading from a client with this many unanswered requests. */
#define MAX_PENDING 4096
/* Room for replies waiting to be sent to one client. */
#define OUT_SIZE 8192
/* The longest reply: 20 digits of a 64-bit value and '\n'. */
#define MAX_REPLY 21

struct client {
	int fd;                  /* -1 for a free slot */
	unsigned long pending;   /* requests read but not yet answered */
	int eof;                 /* the client has closed its sending half */
	char out[OUT_SIZE];      /* replies not yet sent: out[sent..len) */
	size_t len, sent;
};

static unsigned long long counter;
static struct client clients[MAX_CLIENTS];

static void die(const char *what)
{
	perror(what);
	exit(1);
}

static void close_client(struct client *c, const char *why)
{
	printf("ftvm-counter: connection %d closed (%s), counter %llu\n", c->fd,
	       why, counter);
	fflush(stdout);
	while (close(c->fd) < 0 && errno == EINTR)
		;
	c->fd = -1;
}

/* Turns pending requests into replies while the output buffer has room. */
static void answer(struct client *c)
{
	if (c->sent == c->len)
		c->sent = c->len = 0;
	if (c->sent > 0 && OUT_SIZE - c->len < MAX_REPLY) {
		memmove(c->out, c->out + c->sent, c->len - c->sent);
		c->len -= c->sent;
		c->sent = 0;
	}
	while (c->pending > 0 && OUT_SIZE - c->len >= MAX_REPLY + 1) {
		counter++;
		c->pending--;
		c->len += (size_t)snprintf(c->out + c->len, OUT_SIZE - c->len,
					   "%llu\n", counter);
	}
}

/* Sends what it can; returns -1 if the connection failed. */
static int flush_out(struct client *c)
{
	while (c->sent < c->len) {
		ssize_t n = send(c->fd, c->out + c->sent, c->len - c->sent,
				 MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		c->sent += (size_t)n;
	}
	return 0;
}

/* Reads what is available and counts the requests; -1 if the connection failed. */
static int read_in(struct client *c)
{
	char buf[4096];

	while (!c->eof && c->pending < MAX_PENDING) {
		ssize_t n = recv(c->fd, buf, sizeof buf, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			return -1;
		}
		if (n == 0) {
			c->eof = 1;
			return 0;
		}
		for (ssize_t i = 0; i < n; i++)
			if (buf[i] == '\n')
				c->pending++;
	}
	return 0;
}

static void serve(struct client *c, short revents)
{
	if (revents & (POLLIN | POLLHUP | POLLERR)) {
		if (read_in(c) < 0) {
			close_client(c, strerror(errno));
			return;
		}
	}
	/* Answer and send until neither makes progress. */
	for (;;) {
		size_t before = c->sent;
		unsigned long pending = c->pending;
		answer(c);
		if (flush_out(c) < 0) {
			close_client(c, strerror(errno));
			return;
		}
		if (c->sent == before && c->pending == pending)
			break;
		if (c->pending == 0 && c->sent == c->len)
			break;
	}
	if (c->eof && c->pending == 0 && c->sent == c->len)
		close_client(c, "end of stream");
}

static int listen_on(int port)
{
	struct sockaddr_in addr;
	int one = 1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		die("socket");
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0)
		die("setsockopt SO_REUSEADDR");
	memset(&addr, 0, sizeof addr);
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	addr.sin_port = htons((unsigned short)port);
	if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
		die("bind");
	if (listen(fd, 16) < 0)
		die("listen");
	return fd;
}

static void accept_one(int lfd)
{
	int one = 1;
	int fd;
	struct client *c = NULL;

	for (int i = 0; i < MAX_CLIENTS; i++)
		if (clients[i].fd < 0) {
			c = &clients[i];
			break;
		}
	if (!c)
		return;
	do
		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK &&
		    errno != ECONNABORTED)
			perror("accept");
		return;
	}
	/* Replies are small and each one is awaited: send them at once. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	c->fd = fd;
	c->pending = 0;
	c->eof = 0;
	c->len = c->sent = 0;
	printf("ftvm-counter: connection %d opened, counter %llu\n", fd, counter);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	int port = 7777;
	int lfd;

	if (argc > 2) {
		fprintf(stderr, "usage: %s [PORT]\n", argv[0]);
		return 2;
	}
	if (argc == 2) {
		char *end;
		long p = strtol(argv[1], &end, 10);
		if (*argv[1] == '\0' || *end != '\0' || p < 1 || p > 65535) {
			fprintf(stderr, "%s: bad port '%s'\n", argv[0], argv[1]);
			return 2;
		}
		port = (int)p;
	}
	signal(SIGPIPE, SIG_IGN);
	for (int i = 0; i < MAX_CLIENTS; i++)
		clients[i].fd = -1;
	lfd = listen_on(port);
	printf("ftvm-counter: listening on port %d\n", port);
	fflush(stdout);

	for (;;) {
		struct pollfd pfd[MAX_CLIENTS + 1];
		struct client *who[MAX_CLIENTS + 1];
		nfds_t n = 0;
		int free_slots = 0;

		for (int i = 0; i < MAX_CLIENTS; i++) {
			struct client *c = &clients[i];
			short events = 0;
			if (c->fd < 0) {
				free_slots++;
				continue;
			}
			if (!c->eof && c->pending < MAX_PENDING)
				events |= POLLIN;
			if (c->sent < c->len)
				events |= POLLOUT;
			pfd[n].fd = c->fd;
			pfd[n].events = events;
			who[n++] = c;
		}
		if (free_slots > 0) {
			pfd[n].fd = lfd;
			pfd[n].events = POLLIN;
			who[n++] = NULL;
		}
		if (poll(pfd, n, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("poll");
		}
		for (nfds_t i = 0; i < n; i++) {
			if (!pfd[i].revents)
				continue;
			if (who[i])
				serve(who[i], pfd[i].revents);
			else
				accept_one(lfd);
		}
	}
}
