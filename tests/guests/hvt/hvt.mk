# Solo5 hvt test guests (included by ../Makefile before its `all` target).
#
# 64-bit C entered in long mode by ukvm's hvt loader, linked at 1 MiB in
# R+X / R / R+W segments with the two Solo5 notes (hvt/hvt.ld). Built with
# the Makefile's 64-bit flags (GUEST_CFLAGS64: -mgeneral-regs-only,
# -mno-red-zone). Three are deliberately malformed, for the loader's
# checks: hvt-lowseg (linked below 1 MiB), hvt-badabi (ABI version 3),
# hvt-bigmft (65 manifest entries).

# Included before `all`: keep it the default goal.
.DEFAULT_GOAL := all

HVT_GUESTS := hello time block net exit
BINS += $(HVT_GUESTS:%=$(OUT)/hvt-%.bin) \
	$(OUT)/hvt-lowseg.bin $(OUT)/hvt-badabi.bin $(OUT)/hvt-bigmft.bin

# Recursive: GUEST_CFLAGS64 is defined further down the Makefile.
HVT_CFLAGS = $(GUEST_CFLAGS64) -Wno-missing-field-initializers -I$(SRC)/hvt
HVT_DEPS := $(SRC)/hvt/hvt.h $(SRC)/libc.c $(SRC)/hvt/hvt.mk $(SRC)/Makefile
HVT_LINK = $(GUEST_LD) $(GUEST_LDFLAGS64) -T $(SRC)/hvt/hvt.ld --defsym HVT_BASE=$(1) \
	-o $(TMP) $(filter %.o,$^) && mv -f $(TMP) $@

$(OBJ)/hvt-%.o: $(SRC)/hvt/%.c $(HVT_DEPS) | $(OBJ)
	$(Q)$(GUEST_CC) $(HVT_CFLAGS) -c $< -o $(TMP) && mv -f $(TMP) $@

$(OBJ)/hvt-hello-abi3.o: $(SRC)/hvt/hello.c $(HVT_DEPS) | $(OBJ)
	$(Q)$(GUEST_CC) $(HVT_CFLAGS) -DABI_VERSION=3 -c $< -o $(TMP) && mv -f $(TMP) $@

$(OBJ)/hvt-hello-bigmft.o: $(SRC)/hvt/hello.c $(HVT_DEPS) | $(OBJ)
	$(Q)$(GUEST_CC) $(HVT_CFLAGS) -DBIG_MANIFEST -c $< -o $(TMP) && mv -f $(TMP) $@

$(OUT)/hvt-%.bin: $(OBJ)/hvt-hvt_common.o $(OBJ)/hvt-%.o $(SRC)/hvt/hvt.ld
	@echo "  GUEST   $(notdir $@)"
	$(Q)$(call HVT_LINK,0x100000)

$(OUT)/hvt-lowseg.bin: $(OBJ)/hvt-hvt_common.o $(OBJ)/hvt-hello.o $(SRC)/hvt/hvt.ld
	@echo "  GUEST   $(notdir $@)"
	$(Q)$(call HVT_LINK,0x80000)

$(OUT)/hvt-badabi.bin: $(OBJ)/hvt-hvt_common.o $(OBJ)/hvt-hello-abi3.o $(SRC)/hvt/hvt.ld
	@echo "  GUEST   $(notdir $@)"
	$(Q)$(call HVT_LINK,0x100000)

$(OUT)/hvt-bigmft.bin: $(OBJ)/hvt-hvt_common.o $(OBJ)/hvt-hello-bigmft.o $(SRC)/hvt/hvt.ld
	@echo "  GUEST   $(notdir $@)"
	$(Q)$(call HVT_LINK,0x100000)
