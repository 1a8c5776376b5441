/*
 * A deliberate leak: the harness's runner checks that valgrind and
 * AddressSanitizer report it here, so their silence on the real harness
 * means something.
 */
#include "ferry.h"

#include <stdio.h>

int main(void) {
    FerryConfig *config = NULL;
    if (ferry_config_new(&config) != FERRY_RESULT_OK) {
        return 2;
    }
    config = NULL; /* lost, never freed */
    puts("leaked a config");
    return 0;
}
