;; A Wasm exception must not escape a canon-lifted function: it traps.
;; Inside a component, exceptions cross core instances (tags shared
;; through instantiation arguments) like any core call.
(component
  (core module $Tag (tag (export "t") (param i32)))
  (core module $M
    (import "tag" "t" (tag $t (param i32)))
    (func (export "escape") (param i32) (throw $t (local.get 0)))
    (func (export "contained") (param i32) (result i32)
      (block $h (result i32)
        (try_table (catch $t $h) (throw $t (local.get 0)))
        (unreachable))
      (i32.const 1)
      (i32.add)))
  (core instance $tag (instantiate $Tag))
  (core instance $m (instantiate $M (with "tag" (instance $tag))))
  (func (export "escape") (param "x" u32)
    (canon lift (core func $m "escape")))
  (func (export "contained") (param "x" u32) (result u32)
    (canon lift (core func $m "contained")))
)
(assert_return (invoke "contained" (u32.const 41)) (u32.const 42))
;; (The trap poisons the component instance, as any trap does: last.)
(assert_trap (invoke "escape" (u32.const 1)) "uncaught exception")
