#include <stdio.h>

int main(void) {
    int unused;
    int count = "three";
    printf("%d\n", undefined_name);
    return 0;
}
