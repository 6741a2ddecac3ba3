/* placeholder during bring-up */
