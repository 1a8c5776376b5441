/*
 * ferry_chat: a small chat program on Ferry's C ABI.
 *
 * Two of them talk over loopback (or any network): each keeps its own
 * encrypted store in <data-dir>. Commands on stdin, one per line:
 *
 *   code           print this node's contact code       -> CODE <code>
 *   addr           print an address to dial us at        -> ADDR <multiaddr>
 *   add <code>     add a contact (the one we talk to)    -> ADDED <key hex>
 *   dial <addr>    connect to another node directly      -> CONNECTED <peer>
 *   send <text>    send to the contact                   -> QUEUED <id>
 *   history        the conversation, oldest first        -> HISTORY ...
 *   quit           stop and exit
 *
 * Events are printed as they come (a second thread pulls them):
 *   MSG <text>            a message arrived (acknowledged once printed)
 *   STATUS <id> <status>  one of ours moved on (sent, carried, delivered..)
 *
 * Build: cc -Wall -Wextra -Werror -std=c11 -D_POSIX_C_SOURCE=200809L \
 *          -I ffi/include examples/c/ferry_chat.c target/release/libferry.a \
 *          -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc -o ferry_chat
 * Run:   ./ferry_chat /tmp/alice "a passphrase" [--fast]
 *        (--fast: quick KDF and receipts for demos and tests only)
 */
#include "ferry.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static void say(const char *fmt, const char *a, const char *b) {
    pthread_mutex_lock(&out_lock);
    printf(fmt, a, b);
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
}

/* Prints a failed call's code and the node's last error. */
static void fail(FerryNode *node, const char *what, FerryResult r) {
    char *why = node ? ferry_node_last_error(node) : NULL;
    pthread_mutex_lock(&out_lock);
    printf("ERROR %s: %s: %s\n", what, ferry_result_str(r), why ? why : "");
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    ferry_string_free(&why);
}

static const char *status_name(FerryMessageStatus s) {
    switch (s) {
    case FERRY_MESSAGE_STATUS_QUEUED: return "queued";
    case FERRY_MESSAGE_STATUS_SENT: return "sent";
    case FERRY_MESSAGE_STATUS_CARRIED: return "carried";
    case FERRY_MESSAGE_STATUS_DELIVERED: return "delivered";
    case FERRY_MESSAGE_STATUS_EXPIRED: return "expired";
    case FERRY_MESSAGE_STATUS_FAILED: return "failed";
    default: return "unknown";
    }
}

/* The event thread: runs until the node has stopped. */
static void *events(void *arg) {
    FerryNode *node = arg;
    for (;;) {
        FerryEvent *event = NULL;
        FerryResult r = ferry_next_event(node, 500, &event);
        if (r == FERRY_RESULT_TIMEOUT) {
            continue;
        }
        if (r != FERRY_RESULT_OK) {
            break; /* FERRY_RESULT_CLOSED: stopped, every event read */
        }
        if (event->kind == FERRY_EVENT_KIND_MESSAGE) {
            /* Bodies are bytes; this program sends text. */
            char *text = malloc(event->body.len + 1);
            if (text) {
                memcpy(text, event->body.data, event->body.len);
                text[event->body.len] = 0;
                say("MSG %s%s\n", text, "");
                free(text);
            }
            ferry_node_ack(node, &event->message_id);
        } else if (event->kind == FERRY_EVENT_KIND_MESSAGE_STATUS) {
            char *id = NULL;
            if (ferry_message_id_to_hex(&event->message_id, &id) ==
                FERRY_RESULT_OK) {
                say("STATUS %s %s\n", id, status_name(event->status));
            }
            ferry_string_free(&id);
        } else if (event->kind == FERRY_EVENT_KIND_KEY_CHANGED) {
            say("WARNING %s%s\n", "the contact's keys changed: compare "
                "safety numbers again", "");
        }
        ferry_event_free(&event);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s <data-dir> <passphrase> [--fast]\n", argv[0]);
        return 2;
    }
    int fast = argc > 3 && strcmp(argv[3], "--fast") == 0;
    if (ferry_abi_version() != FERRY_ABI_VERSION) {
        fprintf(stderr, "library ABI %u, header %u\n", ferry_abi_version(),
                (unsigned)FERRY_ABI_VERSION);
        return 1;
    }

    FerryConfig *config = NULL;
    FerryNode *node = NULL;
    FerryResult r = ferry_config_new(&config);
    if (r == FERRY_RESULT_OK) r = ferry_config_set_storage(config, argv[1], argv[2]);
    if (r == FERRY_RESULT_OK)
        r = ferry_config_add_listen_address(config, "/ip4/127.0.0.1/tcp/0");
    if (r == FERRY_RESULT_OK) r = ferry_config_set_transports(config, 0, 0);
    if (r == FERRY_RESULT_OK && fast) r = ferry_config_set_kdf(config, 256, 1, 1);
    if (r == FERRY_RESULT_OK && fast) r = ferry_config_set_timing(config, 2, 1);
    if (r == FERRY_RESULT_OK) r = ferry_node_start(config, &node);
    if (r != FERRY_RESULT_OK) {
        char *why = ferry_config_last_error(config);
        fprintf(stderr, "cannot start: %s: %s\n", ferry_result_str(r),
                why ? why : "");
        ferry_string_free(&why);
        ferry_config_free(&config);
        return 1;
    }
    ferry_config_free(&config);

    pthread_t thread;
    pthread_create(&thread, NULL, events, node);

    FerryIdentityKey contact;
    int have_contact = 0;
    char line[4096];
    while (fgets(line, sizeof line, stdin)) {
        line[strcspn(line, "\r\n")] = 0;
        if (strcmp(line, "quit") == 0) {
            break;
        } else if (strcmp(line, "code") == 0) {
            char *code = NULL;
            if ((r = ferry_node_contact_code(node, &code)) == FERRY_RESULT_OK)
                say("CODE %s%s\n", code, "");
            else
                fail(node, "code", r);
            ferry_string_free(&code);
        } else if (strcmp(line, "addr") == 0) {
            char *addrs = NULL;
            if ((r = ferry_node_listen_addresses(node, &addrs)) == FERRY_RESULT_OK) {
                addrs[strcspn(addrs, "\n")] = 0;
                say("ADDR %s%s\n", addrs, "");
            } else {
                fail(node, "addr", r);
            }
            ferry_string_free(&addrs);
        } else if (strncmp(line, "add ", 4) == 0) {
            if ((r = ferry_node_add_contact(node, line + 4, &contact)) == FERRY_RESULT_OK) {
                char *hex = NULL;
                ferry_identity_key_to_hex(&contact, &hex);
                say("ADDED %s%s\n", hex ? hex : "", "");
                ferry_string_free(&hex);
                have_contact = 1;
            } else {
                fail(node, "add", r);
            }
        } else if (strncmp(line, "dial ", 5) == 0) {
            char *peer = NULL;
            if ((r = ferry_node_dial(node, line + 5, &peer)) == FERRY_RESULT_OK)
                say("CONNECTED %s%s\n", peer, "");
            else
                fail(node, "dial", r);
            ferry_string_free(&peer);
        } else if (strncmp(line, "send ", 5) == 0) {
            if (!have_contact) {
                say("ERROR %s%s\n", "add a contact first", "");
                continue;
            }
            FerryMessageId id;
            const char *text = line + 5;
            r = ferry_node_send(node, &contact, (const uint8_t *)text,
                                strlen(text), &id);
            if (r == FERRY_RESULT_OK) {
                char *hex = NULL;
                ferry_message_id_to_hex(&id, &hex);
                say("QUEUED %s%s\n", hex ? hex : "", "");
                ferry_string_free(&hex);
            } else {
                fail(node, "send", r);
            }
        } else if (strcmp(line, "history") == 0 && have_contact) {
            FerryMessageList *page = NULL;
            if ((r = ferry_node_messages(node, &contact, 0, 50, &page)) == FERRY_RESULT_OK) {
                for (size_t i = page->len; i > 0; i--) {
                    const FerryStoredMessage *m = &page->items[i - 1];
                    const char *text = m->body.data ? (const char *)m->body.data : "";
                    printf("HISTORY %s %.*s\n", m->outgoing ? ">" : "<",
                           (int)m->body.len, text);
                }
                fflush(stdout);
            } else {
                fail(node, "history", r);
            }
            ferry_message_list_free(&page);
        } else if (line[0]) {
            say("ERROR unknown command: %s%s\n", line, "");
        }
    }

    /* The shutdown order: stop, let the event thread see CLOSED, free. */
    ferry_node_stop(node);
    pthread_join(thread, NULL);
    ferry_node_free(&node);
    return 0;
}
