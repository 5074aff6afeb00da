/* spool: placeholder until the module lands. */
#include "spool.h"
